import { execFileSync } from 'node:child_process';
import { basename, dirname, resolve } from 'node:path';
import { LintUsageError } from './rules.js';

/**
 * The text of `file` at git `ref`, or `''` when the file does not exist there (a new file:
 * everything in it is new). Runs git without a shell, from the file's own folder, so the path
 * is `REF:./name` whatever the repository root is. An unknown ref is a usage error.
 */
export function readAtRef(file: string, ref: string): string {
  // A ref is passed as an argument; one that starts with "-" would be read as an option.
  if (ref === '' || ref.startsWith('-')) throw new LintUsageError(`--base: "${ref}" is not a git ref`);
  const cwd = dirname(resolve(file));
  const git = (args: string[]) => execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 16 * 1024 * 1024 });
  try {
    git(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`]);
  } catch (err) {
    const why = (err as { code?: string }).code === 'ENOENT' ? 'git is not installed' : `"${ref}" is not a commit in the repository of ${file}`;
    throw new LintUsageError(`--base: ${why}`, { cause: err });
  }
  const spec = `${ref}:./${basename(file)}`;
  try {
    git(['cat-file', '-e', spec]);
  } catch {
    return '';
  }
  return git(['show', spec]);
}
