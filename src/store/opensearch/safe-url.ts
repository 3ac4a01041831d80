// Apart from connection.ts, so that naming a store in a message does not load the OpenSearch client.

/** The URL with any user:password taken out (for messages). */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(unparsable URL)';
  }
}
