/**
 * The other end of bench/floor.ts's socket measurements, in a process of its own so its CPU is not
 * charged to the side being measured. One JSON argument:
 *   - `tls`: a TLS client that sends a password-grant-sized HTTP request, reads the whole answer
 *     (by its content-length) and sends the next, for ever;
 *   - `ws`: a WebSocket client (`ws`, as the agent) that answers every frame with a result frame.
 * It runs until its parent kills it.
 */
import { connect } from 'node:tls';
import WebSocket from 'ws';

const spec = JSON.parse(process.argv[2] ?? '{}') as {
  mode: 'tls' | 'ws';
  port: number;
  ca: string;
  request?: string;
  result?: string;
};

if (spec.mode === 'tls') {
  const s = connect({ host: '127.0.0.1', port: spec.port, ca: spec.ca, servername: 'localhost' });
  let buf = '';
  s.setEncoding('utf8');
  s.on('secureConnect', () => s.write(spec.request!));
  s.on('data', (chunk: string) => {
    buf += chunk;
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const len = Number(/content-length: (\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
    if (buf.length < end + 4 + len) return;
    buf = buf.slice(end + 4 + len);
    s.write(spec.request!);
  });
  s.on('error', () => process.exit(0));
} else {
  const ws = new WebSocket(`wss://localhost:${spec.port}/`, { ca: spec.ca, perMessageDeflate: false });
  ws.on('message', () => ws.send(spec.result!));
  ws.on('error', () => process.exit(0));
  ws.on('close', () => process.exit(0));
}
