/**
 * The shared store's copy of quarantined decisions (records a replica's spool could not forward:
 * their id holds another decision in PostgreSQL, or PostgreSQL refused them). They are kept outside
 * every chain, so an export of the database (`tzw decisions export`) shows them with the reason,
 * whichever replica refused them. The table is created on first use, apart from the versioned
 * schema: it holds evidence about the chains, not part of them.
 */
import type pg from 'pg';
import type { ChainedRecord } from '../../core/record.js';
import type { QuarantinedRecord } from '../port.js';

export const QUARANTINE_TABLE = 'quarantined_decisions';

/** `q`: the schema prefix (`"schema".` or ''). */
function ddl(table: string): string {
  return `CREATE TABLE IF NOT EXISTS ${table} (
    writer text NOT NULL,
    seq bigint NOT NULL,
    hash text NOT NULL,
    id text NOT NULL,
    record text NOT NULL,
    reason text NOT NULL,
    time text NOT NULL,
    body text,
    PRIMARY KEY (writer, seq, hash)
  )`;
}

/**
 * Stores copies of quarantined records, idempotent by (writer, seq, hash). One transaction; the
 * table is created under an advisory lock so replicas doing it together do not race. Throws the
 * driver's error (the caller keeps its own copy and retries).
 */
export async function appendQuarantined(pool: pg.Pool, q: string, entries: QuarantinedRecord[]): Promise<void> {
  if (entries.length === 0) return;
  const table = `${q}${QUARANTINE_TABLE}`;
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`tekton-zscaler-webhook:quarantine:${q}`]);
    await client.query(ddl(table));
    await client.query(
      `INSERT INTO ${table} (writer, seq, hash, id, record, reason, time, body)
       SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
       ON CONFLICT DO NOTHING`,
      [
        entries.map((e) => String(e.record.replica)),
        entries.map((e) => e.record.seq),
        entries.map((e) => e.record.hash),
        entries.map((e) => String(e.record.id)),
        entries.map((e) => JSON.stringify(e.record)),
        entries.map((e) => e.reason),
        entries.map((e) => e.time),
        entries.map((e) => e.body ?? null),
      ],
    );
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    client.release(broken);
  }
}

/** Every quarantined record the database holds, oldest first; none when the table does not exist. */
export async function readQuarantined(pool: pg.Pool, q: string): Promise<QuarantinedRecord[]> {
  const table = `${q}${QUARANTINE_TABLE}`;
  const exists = await pool.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [table]);
  if (!exists.rows[0]?.t) return [];
  const res = await pool.query<{ record: string; reason: string; time: string; body: string | null }>(`SELECT record, reason, time, body FROM ${table} ORDER BY time, writer, seq`);
  return res.rows.map((r) => ({ record: JSON.parse(r.record) as ChainedRecord, reason: r.reason, time: r.time, ...(r.body === null ? {} : { body: r.body }) }));
}
