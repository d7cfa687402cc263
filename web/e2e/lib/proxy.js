// A tiny TCP proxy: "the same URL" in front of several chatd nodes. Every new
// connection goes to the current target port; moving the target (when the
// node behind it is killed) sends reconnecting browsers to another node.
// While hold is set, what the nodes send is dropped (what clients send still
// goes through): an answer lost on the way, as when a network fails just
// after a request left.

import net from 'node:net';
import { once } from 'node:events';

export class Proxy {
  constructor(target) {
    this.target = target;
    this.sockets = new Set();
    this.hold = false;
    this.server = net.createServer((client) => this.pipe(client));
  }

  async listen(port) {
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = this.server.address().port;
    this.url = `http://127.0.0.1:${this.port}`;
  }

  pipe(client) {
    const upstream = net.connect(this.target, '127.0.0.1');
    this.sockets.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.on('data', (chunk) => {
      if (!this.hold) client.write(chunk);
    });
  }

  /** Cuts every open connection, as a network failure would. */
  dropAll() {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  async close() {
    this.dropAll();
    this.server.close();
    await once(this.server, 'close');
  }
}
