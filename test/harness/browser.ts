/**
 * Debian's Chromium driven by playwright-core, for the browser tests and screenshots.
 *
 * Trusting the service's private CA: Chromium on Linux reads trust from an NSS database, which
 * would need certutil (another Debian package) and a throwaway HOME. Instead we pin the one
 * server key we expect with --ignore-certificate-errors-spki-list. That is pinning, not skipping
 * verification: Chromium still refuses every certificate whose chain carries no pinned key, so a
 * different server (or a man in the middle) on the same name fails exactly as it would without
 * the flag. The pin itself is taken only from a TLS connection that Node verified against the
 * pinned CA (see `serverSpki`), so we never pin a key that our CA did not vouch for.
 * `ignoreHTTPSErrors` stays false in every context.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:tls';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

export const CHROMIUM = process.env.GATEHOUSE_CHROMIUM ?? '/usr/bin/chromium';

/** base64(sha256(SubjectPublicKeyInfo)) of a PEM certificate: the form Chromium's flag takes. */
export const spkiHash = (certPem: string | Buffer): string => {
  const der = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64');
};

/**
 * The SPKI hash of the certificate a TLS server presents, read over a connection that must
 * verify against `caPem` for the URL's host name (otherwise this rejects).
 */
export const serverSpki = (url: string, caPem: string): Promise<string> => {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: u.hostname,
      port: Number(u.port || 443),
      servername: /^[\d.]+$|:/.test(u.hostname) ? undefined : u.hostname,
      ca: caPem,
      rejectUnauthorized: true,
    });
    socket.once('secureConnect', () => {
      const cert = socket.getPeerX509Certificate();
      socket.end();
      if (!cert) return reject(new Error(`no certificate from ${u.host}`));
      resolve(spkiHash(cert.toString()));
    });
    socket.once('error', reject);
  });
};

export interface LaunchOptions {
  /** SPKI hashes (see `serverSpki`) of the TLS servers the browser may trust beyond the system store. */
  pinnedSpki?: string[];
  /** Extra Chromium switches. */
  args?: string[];
}

export const launchBrowser = async (opts: LaunchOptions = {}): Promise<Browser> => {
  const args = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    ...(opts.pinnedSpki?.length
      ? [`--ignore-certificate-errors-spki-list=${opts.pinnedSpki.join(',')}`]
      : []),
    ...(opts.args ?? []),
  ];
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
};

/** A fresh context (no cookies) that never ignores certificate errors. */
export const newContext = (browser: Browser): Promise<BrowserContext> =>
  browser.newContext({ ignoreHTTPSErrors: false, locale: 'en-GB' });

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  targets: string[];
}

/**
 * Runs axe-core (WCAG 2 A and AA rules, colour contrast included) on the page as it is now. axe is
 * evaluated through the DevTools protocol, which the pages' strict Content-Security-Policy does not
 * govern, so nothing about the page itself is loosened for the check.
 */
export const accessibilityViolations = async (page: Page): Promise<AxeViolation[]> => {
  const source = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(source);
  return page.evaluate(async () => {
    const w = window as unknown as {
      axe: {
        run(
          ctx: Document,
          opts: object,
        ): Promise<{
          violations: { id: string; impact: string | null; help: string; nodes: { target: string[] }[] }[];
        }>;
      };
    };
    const r = await w.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] } });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.map((n) => n.target.join(' ')),
    }));
  });
};
