/**
 * The progress module (webhook/cli/progress.ts) without a real terminal: a fake TTY sink and a fake
 * clock show what a person would see (lines, refresh cadence, clearing), a pipe sink what a CI log
 * gets, and a real-clock loop that never does I/O shows Ctrl-C still gets through.
 */
import t from 'tap';
import {
  canAnimate, createProgress, describeInterrupt, formatDuration, InterruptedError, toProgressText, type ProgressSink,
} from '../../webhook/cli/progress.js';

interface FakeSink extends ProgressSink {
  writes: Array<{ at: number; s: string }>;
}

/** A terminal (or pipe) that records what was written and when (fake ms). */
function fakeSink(isTTY: boolean, clock: { t: number }, columns?: number): FakeSink {
  const writes: Array<{ at: number; s: string }> = [];
  return { isTTY, columns, writes, write: (s) => writes.push({ at: clock.t, s }) };
}

/**
 * Drives `records` items through onProgress, advancing the fake clock `msPerItem` per item and
 * awaiting the promises onProgress returns, like the evidence loops do.
 */
async function drive(progress: ReturnType<typeof createProgress>, clock: { t: number }, records: number, msPerItem: number, phase = 'records'): Promise<void> {
  for (let i = 0; i <= records; i++) {
    const p = progress.onProgress({ phase, done: i, total: records });
    if (p) await p;
    clock.t += msPerItem;
  }
}

const ESC = '\x1b';

t.test('fake TTY: nothing for the first 500 ms, then one line rewritten in place at least every 500 ms, erased at the end', async (t) => {
  const clock = { t: 0 };
  const sink = fakeSink(true, clock, 120);
  const progress = createProgress(sink, { title: 'verify', now: () => clock.t, env: {} });
  await drive(progress, clock, 10_000, 0.5); // 5 s of fake work at 2,000 records/s
  progress.stop();
  const lines = sink.writes.slice(0, -1);
  t.ok(lines.length >= 9, `${lines.length} refreshes over 4.5 s of visible work`);
  t.ok(lines.every((w) => w.at >= 500), 'none before the work has run 500 ms');
  t.ok(lines[0]!.at < 600, 'the first one soon after 500 ms');
  const gaps = lines.slice(1).map((w, i) => w.at - lines[i]!.at);
  t.ok(Math.max(...gaps) <= 500, `refreshed at least every 500 ms (largest gap ${Math.max(...gaps)} ms)`);
  for (const w of lines) {
    t.ok(w.s.startsWith('\r') && w.s.endsWith(`${ESC}[K`), 'carriage return, then erase the rest of the line');
    t.notOk(w.s.includes('\n'), 'never a newline: one line, updated');
  }
  t.match(lines[3]!.s, /^\r\x1b\[1mverify\x1b\[22m: records [\d,]+\/10,000 \(\d+%\), 2,000\/s, 0:0\d left\x1b\[K$/);
  t.strictSame(sink.writes.at(-1)?.s, `\r${ESC}[K`, 'stop() erases the line before the result is printed');
  progress.stop();
  t.equal(sink.writes.filter((w) => w.s === `\r${ESC}[K`).length, 1, 'stop is idempotent');
});

t.test('fake TTY: short work prints nothing, not even a clear', async (t) => {
  const clock = { t: 0 };
  const sink = fakeSink(true, clock);
  const progress = createProgress(sink, { title: 'export', now: () => clock.t, env: {} });
  await drive(progress, clock, 400, 1); // 0.4 s
  progress.stop();
  t.strictSame(sink.writes, []);
});

t.test('pipe: no carriage returns; at most one plain line every ~10 s with the same facts', async (t) => {
  const clock = { t: 0 };
  const sink = fakeSink(false, clock);
  const progress = createProgress(sink, { title: 'export', now: () => clock.t, env: {} });
  await drive(progress, clock, 25_000, 1); // 25 s
  progress.stop();
  t.equal(sink.writes.length, 2, 'two lines in 25 s');
  // The clock is read every 64th item, so a line comes at most 64 fake ms late.
  t.ok(sink.writes[0]!.at >= 10_000 && sink.writes[0]!.at < 10_064 && sink.writes[1]!.at - sink.writes[0]!.at >= 10_000, `at ${sink.writes.map((w) => w.at).join(', ')} ms`);
  for (const w of sink.writes) {
    t.notOk(w.s.includes('\r') || w.s.includes(ESC), 'no \\r animation and no escape sequences');
    t.ok(w.s.endsWith('\n'));
  }
  t.match(sink.writes[0]?.s, /^export: records 10,0\d\d\/25,000 \(40%\), 1,000\/s, 0:15 left, 10\.0 s elapsed\n$/);
});

t.test('--quiet: nothing on a terminal or a pipe; TERM=dumb: plain lines; NO_COLOR: no bold', async (t) => {
  for (const isTTY of [true, false]) {
    const clock = { t: 0 };
    const sink = fakeSink(isTTY, clock);
    const progress = createProgress(sink, { title: 'verify', quiet: true, now: () => clock.t, env: {} });
    await drive(progress, clock, 30_000, 1);
    progress.stop();
    t.strictSame(sink.writes, [], `quiet, ${isTTY ? 'TTY' : 'pipe'}`);
  }
  {
    const clock = { t: 0 };
    const sink = fakeSink(true, clock);
    const progress = createProgress(sink, { title: 'verify', now: () => clock.t, env: { TERM: 'dumb' } });
    await drive(progress, clock, 12_000, 1);
    progress.stop();
    t.equal(sink.writes.length, 1, 'TERM=dumb: like a pipe');
    t.match(sink.writes[0]?.s, /^verify: records 10,0\d\d\/12,000 \(83%\), 1,000\/s, 0:02 left, 10\.0 s elapsed\n$/);
  }
  {
    const clock = { t: 0 };
    const sink = fakeSink(true, clock);
    const progress = createProgress(sink, { title: 'verify', now: () => clock.t, env: { NO_COLOR: '1', TERM: 'xterm-256color' } });
    await drive(progress, clock, 2_000, 1);
    progress.stop();
    t.ok(sink.writes.length > 1);
    t.notOk(sink.writes.some((w) => w.s.includes(`${ESC}[1m`)), 'NO_COLOR: no bold');
    t.ok(sink.writes.slice(0, -1).every((w) => w.s.startsWith('\rverify: records ')), 'still animated');
  }
  t.equal(canAnimate({ isTTY: true, write: () => undefined }, { NO_COLOR: '' }), true);
  t.equal(canAnimate({ isTTY: true, write: () => undefined }, { TERM: 'dumb' }), false);
  t.equal(canAnimate({ isTTY: false, write: () => undefined }, {}), false);
});

t.test('a narrow terminal gets a line cut to its width (a wrapped line cannot be erased)', async (t) => {
  const clock = { t: 0 };
  const sink = fakeSink(true, clock, 30);
  const progress = createProgress(sink, { title: 'verify', now: () => clock.t, env: { NO_COLOR: '1' } });
  await drive(progress, clock, 2_000, 1);
  progress.stop();
  const line = sink.writes[0]!.s;
  t.equal(line.slice(1, -3).length, 29, 'visible text is width - 1');
  t.match(line, /^\rverify: records 5\d\d\/2,000 \(25\x1b\[K$/);
});

t.test('toProgressText: unknown totals, bytes, time left', async (t) => {
  t.equal(toProgressText({ phase: 'records', done: 1234 }, undefined), 'records 1,234');
  t.equal(toProgressText({ phase: 'records', done: 1234 }, 500), 'records 1,234, 500/s', 'no total: no percentage, no time left');
  t.equal(toProgressText({ phase: 'records', done: 250, total: 1000 }, 50), 'records 250/1,000 (25%), 50/s, 0:15 left');
  t.equal(toProgressText({ phase: 'checkpoints', done: 3_500_000, total: 7_000_000, unit: 'bytes' }, 1_000_000), 'checkpoints 3.5 MB/7.0 MB (50%), 1.0 MB/s, 0:04 left');
  t.equal(toProgressText({ phase: 'records', done: 0, total: 0 }, undefined), 'records 0/0', 'an empty store: no percentage');
  t.equal(formatDuration(3_725_000), '1:02:05');
  t.equal(describeInterrupt({ last: { phase: 'records', done: 412_000, total: 1_000_000 }, elapsedMs: 16_240 }, 'verify', 'Nothing was changed.'),
    'Interrupted after 16.2 s: verify had reached records 412,000/1,000,000 (41%). Nothing was changed.\n');
  t.equal(describeInterrupt({ last: undefined, elapsedMs: 80 }, 'export', 'No file.'), 'Interrupted after 0.1 s: export had not started. No file.\n');
  t.equal(toProgressText({ phase: 'downloading records', done: 1200, unit: 'records' }, 300), 'downloading records 1,200, 300/s', 'a phase that names its unit says it once');
});

t.test('interrupt: a loop that never does I/O still yields, so a timer (like a SIGINT handler) stops it promptly', async (t) => {
  const sink = fakeSink(false, { t: 0 });
  const progress = createProgress(sink, { title: 'verify', env: {} }); // real clock
  setTimeout(() => progress.interrupt(), 100);
  const started = performance.now();
  let done = 0;
  const err = await (async () => {
    try {
      for (;;) {
        // No real I/O in this loop: without the yields in onProgress the timer above could never run.
        const p = progress.onProgress({ phase: 'records', done: ++done, total: 1e12 });
        if (p) await p;
      }
    } catch (e) {
      return e;
    }
  })();
  progress.stop();
  t.ok(err instanceof InterruptedError, 'the next progress call throws InterruptedError');
  t.equal((err as InterruptedError).code, 'ERR_INTERRUPTED');
  const took = performance.now() - started;
  t.ok(took < 1000, `stopped ${Math.round(took)} ms after the start (interrupt at 100 ms)`);
  t.strictSame(progress.last(), { phase: 'records', done, total: 1e12 }, 'how far it got');
  t.throws(() => progress.onProgress({ phase: 'records', done: 0 }), { code: 'ERR_INTERRUPTED' }, 'and every later call throws');
});

t.test('the refresh timer keeps the line moving while the work waits on something slow', async (t) => {
  const sink = fakeSink(true, { t: 0 });
  const progress = createProgress(sink, { title: 'export', env: {}, timing: { delayMs: 0, refreshMs: 40 } }); // real clock and timers
  progress.onProgress({ phase: 'records', done: 10, total: 100 });
  await new Promise((r) => setTimeout(r, 300)); // a slow query: no progress calls
  progress.stop();
  t.ok(sink.writes.length >= 3, `${sink.writes.length} writes while waiting`);
  t.equal(sink.writes.at(-1)?.s, '\r\x1b[K');
});
