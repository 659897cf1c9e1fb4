/**
 * The man pages pagerd(8) and pagerctl(8), made by help2man from the commands' own --help and
 * --version (the one source of both), with pagerctl's subcommands and the files each uses added.
 *
 *   npm run man:generate     # writes docs/man/pagerd.8 and docs/man/pagerctl.8
 *   node dist/src/cli/generate-man.js --check    # exits 1 if they differ from the help
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CLI = import.meta.dirname;

const SUBCOMMANDS = ['status', 'stats', 'metrics', 'segments list', 'segments create', 'segments delete', 'read', 'write', 'pageout', 'release', 'iowait', 'verify'];

const SEE_ALSO = '[SEE ALSO]\npagerd(8), pagerctl(8), systemd.socket(5)\n.PP\nThe operator\'s guide: docs/operations.md in the pagerd sources.\n';

const PAGERD_EXTRA = `[FILES]
.TP
.I /etc/pagerd/pagerd.json
configuration file (under systemd; every key in config/pagerd.default.json)
.TP
.I /var/lib/pagerd/pagerd.sqlite
segment and page metadata (with its -wal file: back them up with the device)
.TP
.I /var/lib/pagerd/backing
the default backing file
.TP
.I /run/pagerd/pagerd.sock
the client socket
${SEE_ALSO}`;

/** Runs help2man on `name` (a link to the command, so the page names it as installed). */
function manPage(name: string, description: string, include: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'pagerd-man-'));
  try {
    const command = join(dir, name);
    symlinkSync(join(CLI, `${name}.js`), command);
    chmodSync(join(CLI, `${name}.js`), 0o755);
    const extra = join(dir, 'extra.h2m');
    writeFileSync(extra, include);
    // A fixed date: the page changes only when the help does.
    return execFileSync('help2man', ['--no-info', '--section', '8', '--manual', 'pagerd', '--name', description, '--include', extra, command], {
      encoding: 'utf8',
      env: { ...process.env, COLUMNS: '100', SOURCE_DATE_EPOCH: '0' },
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Each pagerctl subcommand's own --help, as a section of the page. */
function pagerctlCommands(): string {
  const helps = SUBCOMMANDS.map((sub) => {
    const help = execFileSync(process.execPath, [join(CLI, 'pagerctl.js'), ...sub.split(' '), '--help'], { encoding: 'utf8' });
    return `.SS "${sub}"\n.nf\n${help.replace(/\\/g, '\\e').replace(/^\./gm, '\\&.').trimEnd()}\n.fi\n`;
  });
  return `[COMMANDS]\n${helps.join('')}`;
}

export function generatedManPages(): { pagerd: string; pagerctl: string } {
  return {
    pagerd: manPage('pagerd', 'userspace pager daemon: the AIX VMM services over a Unix socket', PAGERD_EXTRA),
    pagerctl: manPage('pagerctl', 'control and inspect a running pagerd', `${pagerctlCommands()}${SEE_ALSO}`),
  };
}

if (process.argv[1]?.endsWith('generate-man.js')) {
  const out = new URL('../../../docs/man/', import.meta.url);
  const pages = generatedManPages();
  if (process.argv.includes('--check')) {
    // The shipped pages must be what the commands' help says now (a test runs this).
    const stale = (['pagerd', 'pagerctl'] as const).filter((name) => readFileSync(new URL(`${name}.8`, out), 'utf8') !== pages[name]);
    if (stale.length > 0) {
      console.error(`docs/man: ${stale.map((n) => `${n}.8`).join(', ')} differ from --help: run npm run man:generate`);
      process.exit(1);
    }
  } else {
    writeFileSync(new URL('pagerd.8', out), pages.pagerd);
    writeFileSync(new URL('pagerctl.8', out), pages.pagerctl);
    console.log('wrote docs/man/pagerd.8 and docs/man/pagerctl.8');
  }
}
