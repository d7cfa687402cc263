// "Another origin": a small static server on its own port that serves the
// pages which use chat-client.js from a chatd node elsewhere (the example
// page of examples/web and the test page of pages/), as a site listed in
// CHAT_ALLOWED_ORIGINS would.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { repoRoot } from './chatd.js';

const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };

/** The files served, by URL path. */
const files = {
  '/': 'examples/web/index.html',
  '/api.html': 'web/e2e/pages/api.html',
  '/api.js': 'web/e2e/pages/api.js',
};

export class Origin {
  /** Listens on 127.0.0.1:port (0: any free port). */
  async listen(port = 0) {
    this.server = http.createServer((req, res) => {
      const at = new URL(req.url, 'http://x').pathname;
      if (at === '/favicon.ico') {
        res.writeHead(204).end(); // asked by the browser: not worth a 404 in the console
        return;
      }
      const file = files[at];
      if (!file) {
        res.writeHead(404).end('not found');
        return;
      }
      res.writeHead(200, { 'Content-Type': types[path.extname(file)], 'Cache-Control': 'no-store' });
      res.end(fs.readFileSync(path.join(repoRoot, file)));
    });
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = this.server.address().port;
    this.url = `http://127.0.0.1:${this.port}`;
    /** What CHAT_ALLOWED_ORIGINS names for it. */
    this.host = `127.0.0.1:${this.port}`;
  }

  async close() {
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
  }
}
