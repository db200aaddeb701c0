/** The auth answer cache: TTL by the injected clock, bounded size (least recently used out), shared loads, failures not kept. */
import t from 'tap';
import { createTtlCache } from '../../webhook/http/auth-cache.js';

t.test('entries live for their TTL, by the injected clock', async (t) => {
  const clock = { ms: 0 };
  const cache = createTtlCache<string>({ maxEntries: 10, now: () => clock.ms });
  let loads = 0;
  const load = async () => `v${++loads}`;
  t.strictSame(await cache.getOrLoad('k', load, () => 1000), { value: 'v1', hit: false });
  clock.ms = 999;
  t.strictSame(await cache.getOrLoad('k', load, () => 1000), { value: 'v1', hit: true });
  clock.ms = 1000;
  t.strictSame(await cache.getOrLoad('k', load, () => 1000), { value: 'v2', hit: false }, 'expired at exactly its TTL');
  t.strictSame(await cache.getOrLoad('short', load, (v) => (v === 'v3' ? 0 : 1000)), { value: 'v3', hit: false });
  t.strictSame(await cache.getOrLoad('short', load, () => 1000), { value: 'v4', hit: false }, 'TTL 0: not kept');
});

t.test('bounded: the least recently used entry goes first', async (t) => {
  const cache = createTtlCache<number>({ maxEntries: 3, now: () => 0 });
  for (const k of ['a', 'b', 'c']) await cache.getOrLoad(k, async () => 1, () => 1000);
  await cache.getOrLoad('a', async () => 2, () => 1000); // touch a: b is now the oldest
  await cache.getOrLoad('d', async () => 1, () => 1000);
  t.equal(cache.size(), 3);
  t.equal((await cache.getOrLoad('a', async () => 9, () => 1000)).hit, true, 'a kept (recently used)');
  t.equal((await cache.getOrLoad('b', async () => 9, () => 1000)).hit, false, 'b evicted');
});

t.test('concurrent loads of one key share one load; a failed load is not cached', async (t) => {
  const cache = createTtlCache<string>({ maxEntries: 10, now: () => 0 });
  let loads = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const slow = async () => {
    loads++;
    await gate;
    return 'v';
  };
  const all = Promise.all([1, 2, 3].map(() => cache.getOrLoad('k', slow, () => 1000)));
  release();
  t.strictSame((await all).map((r) => r.value), ['v', 'v', 'v']);
  t.equal(loads, 1);
  await t.rejects(cache.getOrLoad('bad', async () => { throw new Error('down'); }, () => 1000), /down/);
  t.strictSame(await cache.getOrLoad('bad', async () => 'ok', () => 1000), { value: 'ok', hit: false }, 'retried after a failure');
});
