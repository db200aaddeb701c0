/**
 * Talking to a bench server child process (bench/server.ts) over its IPC channel: the next message
 * of a type, and a question answered by one.
 */
import type { ChildProcess } from 'node:child_process';

/** The child's next message of `type`; rejects on its `error` message, its exit, or the timeout. */
export function nextMessage<T extends { type: string }>(child: ChildProcess, type: string, timeoutMs: number): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => done(new Error(`no "${type}" message from the server within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (msg: { type?: string; message?: string }) => {
      if (msg.type === type) done(undefined, msg as T);
      else if (msg.type === 'error') done(new Error(`server failed: ${msg.message}`));
    };
    const onExit = (code: number | null) => done(new Error(`server exited (code ${code}) before sending "${type}"`));
    function done(err: Error | undefined, value?: T) {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolvePromise(value!);
    }
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/** Sends `{type}` and resolves with the child's answer of the same type. */
export function askServer<T extends { type: string }>(child: ChildProcess, type: T['type'], timeoutMs = 30_000): Promise<T> {
  const reply = nextMessage<T>(child, type, timeoutMs);
  child.send({ type });
  return reply;
}
