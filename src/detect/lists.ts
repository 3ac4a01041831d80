/**
 * The shared lists rules refer to (`@system-namespaces` in a match, `$inList(x, 'sensitive-host-paths')` in a
 * condition): defined in the rule files, changed by the tuning config, compiled once per engine.
 */
import { applyListOverride, type ListOverride } from './config.js';
import { compilePathPrefixes, compilePatterns, compileTextPatterns, type StringTest } from './patterns.js';

export class UnknownListError extends Error {
  constructor(readonly list: string) {
    super(`unknown list "${list}"`);
    this.name = 'UnknownListError';
  }
}

export class DetectionLists {
  private readonly tests = new Map<string, StringTest>();
  private readonly paths = new Map<string, StringTest>();
  private readonly texts = new Map<string, RegExp | undefined>();
  readonly systemUser: StringTest;
  readonly systemGroup: StringTest;

  constructor(readonly values: ReadonlyMap<string, readonly string[]>) {
    this.systemUser = compilePatterns(values.get('system-users') ?? []);
    this.systemGroup = compilePatterns(values.get('system-groups') ?? []);
  }

  /** Lists from the rule files with the config's changes applied. Overrides of unknown lists create them. */
  static build(
    base: ReadonlyMap<string, readonly string[]>,
    overrides: Record<string, ListOverride> = {},
    extra: Record<string, string[]> = {},
  ): DetectionLists {
    const m = new Map<string, readonly string[]>(base);
    for (const [name, o] of Object.entries(overrides)) m.set(name, applyListOverride(m.get(name) ?? [], o));
    for (const [name, l] of Object.entries(extra)) m.set(name, l);
    return new DetectionLists(m);
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  get(name: string): readonly string[] {
    const v = this.values.get(name);
    if (!v) throw new UnknownListError(name);
    return v;
  }

  /** Exact/glob/regex membership test of a list. */
  test(name: string): StringTest {
    let t = this.tests.get(name);
    if (!t) {
      t = compilePatterns(this.get(name));
      this.tests.set(name, t);
    }
    return t;
  }

  /** Host-path prefix test of a list (see patterns.compilePathPrefixes). */
  pathTest(name: string): StringTest {
    let t = this.paths.get(name);
    if (!t) {
      t = compilePathPrefixes(this.get(name));
      this.paths.set(name, t);
    }
    return t;
  }

  /** One case-insensitive RegExp for a list of text patterns (substrings or /regex/). */
  text(name: string): RegExp | undefined {
    if (!this.texts.has(name)) this.texts.set(name, compileTextPatterns(this.get(name)));
    return this.texts.get(name);
  }

  /**
   * A system identity: the control plane, nodes and kube-system service accounts (lists `system-users` and
   * `system-groups`). Their routine writes are not what people-facing rules are after.
   */
  isSystem(user: string, groups: readonly string[]): boolean {
    if (this.systemUser(user)) return true;
    for (const g of groups) if (this.systemGroup(g)) return true;
    return false;
  }

  /** A person: authenticated, not a `system:` identity (service account, node, anonymous, control plane). */
  isPerson(user: string, groups: readonly string[]): boolean {
    return user !== '' && !user.startsWith('system:') && !this.isSystem(user, groups);
  }
}
