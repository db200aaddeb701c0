/**
 * A bounded cache with a time-to-live per entry, for authentication and authorization answers.
 * The clock is injected (tests move it); the oldest-used entry goes first when full. Concurrent
 * loads of one key share a single load (the console fires several API calls at once with the same
 * token: one TokenReview, not five). A failed load is not cached: the next request tries again.
 */
export interface TtlCache<V> {
  /**
   * The cached value of `key`, else the result of `load()`, kept for `ttlMs(value)` ms (0: not kept).
   * `hit` says whether the value came from the cache (or a load already under way).
   */
  getOrLoad(key: string, load: () => Promise<V>, ttlMs: (value: V) => number): Promise<{ value: V; hit: boolean }>;
  size(): number;
  clear(): void;
}

export function createTtlCache<V>(opts: { maxEntries: number; now: () => number }): TtlCache<V> {
  const entries = new Map<string, { value: V; expires: number }>();
  const loading = new Map<string, Promise<V>>();
  return {
    async getOrLoad(key, load, ttlMs) {
      const found = entries.get(key);
      if (found) {
        entries.delete(key);
        if (found.expires > opts.now()) {
          entries.set(key, found); // most recently used goes last
          return { value: found.value, hit: true };
        }
      }
      const pending = loading.get(key);
      if (pending) return { value: await pending, hit: true };
      const p = load();
      loading.set(key, p);
      try {
        const value = await p;
        const ttl = ttlMs(value);
        if (ttl > 0) {
          entries.set(key, { value, expires: opts.now() + ttl });
          while (entries.size > opts.maxEntries) entries.delete(entries.keys().next().value as string);
        }
        return { value, hit: false };
      } finally {
        loading.delete(key);
      }
    },
    size: () => entries.size,
    clear: () => entries.clear(),
  };
}
