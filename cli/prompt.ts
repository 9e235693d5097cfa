/** Questions to a person at a terminal, and lines from stdin for scripts. */
import { createInterface } from 'node:readline';
import { CliError, UsageError } from './errors';

export function canPrompt(): boolean {
  return process.stdin.isTTY === true && process.stdout.isTTY === true;
}

function requireTty(alternative: string): void {
  if (!canPrompt()) throw new UsageError(`no terminal to ask on: ${alternative}`);
}

async function answered<T>(value: T | symbol): Promise<T> {
  const { isCancel } = await import('@clack/prompts');
  if (isCancel(value)) throw new CliError('cancelled');
  return value as T;
}

export async function askText(message: string, alternative: string, validate?: (v: string) => string | undefined): Promise<string> {
  requireTty(alternative);
  const { text } = await import('@clack/prompts');
  return answered<string>(await text({ message, validate: validate ? (v) => validate(v ?? '') : undefined }));
}

export async function askSecret(message: string, alternative: string): Promise<string> {
  requireTty(alternative);
  const { password } = await import('@clack/prompts');
  return answered<string>(await password({ message }));
}

export async function askConfirm(message: string, alternative: string): Promise<boolean> {
  requireTty(alternative);
  const { confirm } = await import('@clack/prompts');
  return answered<boolean>(await confirm({ message, initialValue: false }));
}

export async function askChoice<T extends string>(message: string, options: { value: T; label: string; hint?: string }[], alternative: string): Promise<T> {
  requireTty(alternative);
  const { select } = await import('@clack/prompts');
  return answered<T>(await select<T>({ message, options: options as Parameters<typeof select<T>>[0]['options'] }));
}

/** Reads stdin line by line; `next()` resolves undefined at end of input. */
export class StdinLines {
  private readonly lines: string[] = [];
  private readonly waiters: ((l: string | undefined) => void)[] = [];
  private ended = false;
  constructor() {
    const rl = createInterface({ input: process.stdin, terminal: false });
    rl.on('line', (l) => {
      const w = this.waiters.shift();
      if (w) w(l.trim());
      else this.lines.push(l.trim());
    });
    rl.on('close', () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w(undefined);
    });
  }
  next(): Promise<string | undefined> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
