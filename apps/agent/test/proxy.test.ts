import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { createCa, createServerCert } from '@gatehouse/protocol';
import { postJson, proxyFor } from '../src/https.ts';

let server: https.Server;
let proxy: http.Server;
let caPem: string;
let target: string;
let proxyUrl: string;
const tunnels: string[] = [];

before(async () => {
  const ca = await createCa('test cloud CA', 1);
  caPem = ca.certPem;
  const tls = await createServerCert(ca, ['localhost', '127.0.0.1'], 1);
  server = https.createServer({ key: tls.keyPem, cert: tls.certPem }, (req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ echo: JSON.parse(body), path: req.url }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  target = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  // A plain HTTP CONNECT proxy, as an outbound proxy on a customer network would be.
  proxy = http.createServer((_req, res) => res.writeHead(405).end());
  proxy.on('connect', (req, client: net.Socket, head) => {
    tunnels.push(req.url ?? '');
    const [host, port] = (req.url ?? '').split(':');
    const up = net.connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
});

after(() => {
  server?.close();
  proxy?.close();
  server?.closeAllConnections();
  proxy?.closeAllConnections();
});

test('HTTPS through an HTTP CONNECT proxy, with the pinned CA still verified end to end', async () => {
  const r = await postJson(`${target}/agent/v1/register`, { hello: 1 }, { ca: caPem }, { proxy: proxyUrl });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { echo: { hello: 1 }, path: '/agent/v1/register' });
  assert.equal(tunnels.length, 1);
  // Another CA: the tunnel opens, TLS verification still refuses the server.
  const other = await createCa('someone else', 1);
  await assert.rejects(postJson(`${target}/x`, {}, { ca: other.certPem }, { proxy: proxyUrl }));
  assert.equal(tunnels.length, 2);
});

test('proxy selection: config, then HTTPS_PROXY, honouring NO_PROXY', () => {
  assert.equal(proxyFor('https://cloud.example.test', undefined, {}), undefined);
  assert.equal(
    proxyFor('https://cloud.example.test', undefined, { HTTPS_PROXY: 'http://p:3128' }),
    'http://p:3128',
  );
  assert.equal(
    proxyFor('https://cloud.example.test', 'http://cfg:1', { HTTPS_PROXY: 'http://p:3128' }),
    'http://cfg:1',
  );
  assert.equal(
    proxyFor('https://cloud.example.test', undefined, {
      HTTPS_PROXY: 'http://p:3128',
      NO_PROXY: '.example.test',
    }),
    undefined,
  );
  assert.equal(
    proxyFor('https://cloud.other.test', undefined, {
      HTTPS_PROXY: 'http://p:3128',
      NO_PROXY: 'example.test',
    }),
    'http://p:3128',
  );
});
