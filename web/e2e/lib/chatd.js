// Builds chatd from this repository and runs real nodes of it on free
// 127.0.0.1 ports, for the browser tests.

import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const artifacts = path.join(repoRoot, 'web/e2e/artifacts');

/** Builds ./cmd/chatd into a fresh temporary folder; returns the binary's path and the folder. */
export async function buildChatd() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-e2e-'));
  const bin = path.join(dir, 'chatd');
  await promisify(execFile)('go', ['build', '-o', bin, './cmd/chatd'], { cwd: repoRoot });
  return { bin, dir };
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

/**
 * One chatd process. start() runs it and waits until /healthz (or /readyz
 * in cluster mode) answers 200; kill() ends it with a signal and waits.
 */
export class Node {
  constructor(bin, name, port, env = {}) {
    this.bin = bin;
    this.name = name;
    this.port = port;
    this.env = env;
    this.proc = null;
    this.url = `http://127.0.0.1:${port}`;
  }

  async start() {
    fs.mkdirSync(artifacts, { recursive: true });
    const log = fs.openSync(path.join(artifacts, `chatd-${this.name}.log`), 'a');
    this.proc = spawn(this.bin, [], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME || os.tmpdir(),
        CHAT_ADDR: `127.0.0.1:${this.port}`,
        CHAT_DEV_LOGIN: 'true',
        CHAT_PUBLIC_URL: this.url,
        CHAT_NODE_ID: this.name,
        CHAT_SHUTDOWN_TIMEOUT: '5s',
        ...this.env,
      },
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    const exited = once(this.proc, 'exit').then(([code, sig]) => {
      throw new Error(`chatd ${this.name} exited early (code ${code}, signal ${sig}); see artifacts/chatd-${this.name}.log`);
    });
    exited.catch(() => {}); // only awaited below, while starting
    const probe = this.env.CHAT_REDIS_URL ? '/readyz' : '/healthz';
    await Promise.race([exited, this.waitFor(probe)]);
    this.proc.removeAllListeners('exit');
  }

  /** Polls path until it answers 200; gives up after a minute so that a broken build ends the run. */
  async waitFor(p) {
    const deadline = Date.now() + 60000;
    while (Date.now() < deadline) {
      try {
        const r = await fetch(this.url + p);
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`chatd ${this.name} did not answer ${p} within a minute`);
  }

  /** Sends sig (SIGTERM: a graceful shutdown with 1001; SIGKILL: a crash) and waits for the exit. */
  async kill(sig = 'SIGTERM') {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = once(p, 'exit');
    p.kill(sig);
    await gone;
    this.proc = null;
  }
}
