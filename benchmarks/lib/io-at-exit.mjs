// Preloaded into a benchmarked process (`NODE_OPTIONS=--import=...`): at exit, writes what the kernel counted for the whole
// process (every thread: the writer thread's SQLite writes included) to the file named by KAUDIT_BENCH_IO as JSON:
// write_bytes (sent towards the disk), wchar (bytes passed to write calls), VmHWM (peak resident memory).
import { readFileSync, writeFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

const out = process.env.KAUDIT_BENCH_IO;
// Preloads run in worker threads too: only the main thread's exit is the process's.
if (out && isMainThread) {
  process.on('exit', () => {
    const io = Object.fromEntries(
      readFileSync('/proc/self/io', 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(': '))
        .map(([k, v]) => [k, Number(v)]),
    );
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    writeFileSync(out, JSON.stringify({ ...io, peakRss: hwm ? Number(hwm[1]) * 1024 : 0 }));
  });
}
