import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestServiceAccount {
  /** The credentials file, as Google Cloud's console downloads it (`logger.stackdriver.credentials.file`). */
  readonly file: string;
  readonly projectId: string;
  readonly email: string;
  readonly publicKey: KeyObject;
  readonly privateKeyPem: string;
}

/** A Google Cloud service account key file with a fresh RSA key, written into `dir` as <project>-<name>.json. */
export function createTestServiceAccount(dir: string, projectId = 'ekm-test-project', name = 'ekm-logger'): TestServiceAccount {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const email = `${name}@${projectId}.iam.gserviceaccount.com`;
  const file = join(dir, `${projectId}-${name}.json`);
  writeFileSync(file, JSON.stringify({
    type: 'service_account',
    project_id: projectId,
    private_key_id: '0123456789abcdef0123456789abcdef01234567',
    private_key: privateKeyPem,
    client_email: email,
    client_id: '123456789012345678901',
    auth_uri: 'https://accounts.google.com/o/oauth2/auth',
    token_uri: 'https://oauth2.googleapis.com/token',
    auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
    client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(email)}`,
    universe_domain: 'googleapis.com',
  }, null, 2), { mode: 0o600 });
  return { file, projectId, email, publicKey, privateKeyPem };
}
