// Starts only sandbox-runtime's network proxies (its HTTP proxy and its SOCKS5 proxy),
// with the package's own filter building blocks and an allowlist, for bench/run.sh.
// Nothing of the sandbox itself (bwrap, seccomp) is started.
//
//   node bench/srt_proxy.mjs --pkg DIR [--http-port 0] [--socks-port 0] [--mux-port P]
//                            [--allow 127.0.0.1,...] [--max-seconds 3600]
//
// DIR is the installed package (node_modules/@anthropic-ai/sandbox-runtime). Prints one
// JSON line: {"http":P,"socks":P[,"mux":P],"version":"..."}.
// With --mux-port the single-port front-end sandbox-runtime itself runs (first-byte
// sniffing; HTTP goes through a unix-socket backend) is started as well.
// The filter is filterNetworkRequest's allowlist step: canonical host, denied first
// (none here), then allowedDomains with matchesDomainPatternWithPort; direct dials go
// through the resolved-address guard as in sandbox-manager.
import { createServer } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const opt = { pkg: '', http: 0, socks: 0, mux: -1, allow: ['127.0.0.1'], maxSeconds: 3600 };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const v = () => args[++i];
  if (a === '--pkg') opt.pkg = v();
  else if (a === '--http-port') opt.http = Number(v());
  else if (a === '--socks-port') opt.socks = Number(v());
  else if (a === '--mux-port') opt.mux = Number(v());
  else if (a === '--allow') opt.allow = v().split(',').filter(Boolean);
  else if (a === '--max-seconds') opt.maxSeconds = Number(v());
  else { console.error(`unknown option ${a}`); process.exit(2); }
}
if (!opt.pkg) { console.error('--pkg DIR is required'); process.exit(2); }

const mod = p => import(pathToFileURL(join(opt.pkg, 'dist', 'sandbox', p)).href);
const { createHttpProxyServer } = await mod('http-proxy.js');
const { createSocksProxyServer } = await mod('socks-proxy.js');
const { createMuxProxyServer } = await mod('mux-proxy.js');
const { matchesDomainPatternWithPort } = await mod('domain-pattern.js');
const { canonicalizeHost, isValidHost } = await mod('parent-proxy.js');
const { createResolvedAddressGuard } = await mod('resolved-address-guard.js');
const version = JSON.parse(readFileSync(join(opt.pkg, 'package.json'), 'utf8')).version;

const network = { allowedDomains: opt.allow, deniedDomains: [] };
const guard = createResolvedAddressGuard(network);
function filter(port, host) {
  if (!isValidHost(host)) return false;
  const canonical = canonicalizeHost(host) ?? host;
  for (const d of network.deniedDomains) if (matchesDomainPatternWithPort(canonical, port, d)) return false;
  for (const a of network.allowedDomains) if (matchesDomainPatternWithPort(canonical, port, a)) return true;
  return false;
}
const lookupFor = port => guard.lookupFor(port);

const listen = (server, port) => new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', () => resolve(server.address().port));
});

const httpServer = createHttpProxyServer({ filter: (port, host) => filter(port, host), lookupFor });
const socks = createSocksProxyServer({ filter: (port, host) => filter(port, host), lookupFor });
const socksServer = createServer(s => socks.handleConnection(s));
const out = { version, node: process.version };
out.http = await listen(httpServer, opt.http);
out.socks = await listen(socksServer, opt.socks);
if (opt.mux >= 0) {
  // A second HTTP proxy instance behind the mux, as sandbox-runtime runs it.
  const muxHttp = createHttpProxyServer({ filter: (port, host) => filter(port, host), lookupFor });
  const mux = createMuxProxyServer({ httpServer: muxHttp, handleSocksConnection: s => socks.handleConnection(s) });
  await mux.listenHttpBackend();
  out.mux = await listen(mux.server, opt.mux);
}
process.stdout.write(JSON.stringify(out) + '\n');

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setTimeout(stop, opt.maxSeconds * 1000).unref?.();
setInterval(() => {}, 1 << 30);  // keep the loop alive until a signal or the deadline
