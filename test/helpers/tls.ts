// Throwaway certificate authorities and certificates for TLS tests, made with Debian's openssl at test time in a
// temporary directory (never committed). P-256 keys: fast to generate on a busy runner.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCa {
  readonly dir: string;
  /** PEM file of the CA certificate. */
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TestCert {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TestPki {
  readonly dir: string;
  /** A new CA (self-signed) under `name`. */
  ca(name: string): TestCa;
  /** A leaf certificate signed by `ca`, for `serverName` (SAN DNS + 127.0.0.1) usable as server and client. */
  leaf(ca: TestCa, name: string, serverName?: string): TestCert;
  remove(): void;
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'keypool-pki-'));
  return {
    dir,
    ca(name) {
      const keyFile = join(dir, `${name}.key`);
      const certFile = join(dir, `${name}.crt`);
      openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyFile], dir);
      openssl(
        ['req', '-x509', '-new', '-key', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${name}`,
          '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
        dir,
      );
      return { dir, certFile, keyFile };
    },
    leaf(ca, name, serverName = 'keypool.test') {
      const keyFile = join(dir, `${name}.key`);
      const csrFile = join(dir, `${name}.csr`);
      const certFile = join(dir, `${name}.crt`);
      const extFile = join(dir, `${name}.ext`);
      writeFileSync(
        extFile,
        [
          'basicConstraints=CA:FALSE',
          'keyUsage=critical,digitalSignature',
          'extendedKeyUsage=serverAuth,clientAuth',
          `subjectAltName=DNS:${serverName},IP:127.0.0.1`,
          '',
        ].join('\n'),
      );
      openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyFile], dir);
      openssl(['req', '-new', '-key', keyFile, '-out', csrFile, '-subj', `/CN=${name}`], dir);
      openssl(
        ['x509', '-req', '-in', csrFile, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial', '-out', certFile,
          '-days', '2', '-extfile', extFile],
        dir,
      );
      return { certFile, keyFile };
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
