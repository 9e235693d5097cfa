/**
 * Screenshots of console pages for docs/console.md: CONSOLE_SCREENSHOTS=<dir> writes each page at
 * phone (390×844) and desktop (1280×800) width into <dir> (docs/images/console/).
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';

const SHOTS = process.env.CONSOLE_SCREENSHOTS;
export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 800 };

/** Writes the page at both widths when CONSOLE_SCREENSHOTS is set; always checks that nothing is wider than a phone. */
export async function shoot(page: Page, name: string): Promise<void> {
  const wide = await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
  if (page.viewportSize()?.width === PHONE.width) assert.ok(wide <= 0, `${name}: the page scrolls sideways at phone width by ${wide} px`);
  if (!SHOTS) return;
  await mkdir(SHOTS, { recursive: true });
  const was = page.viewportSize() ?? PHONE;
  for (const [suffix, size] of [
    ['phone', PHONE],
    ['desktop', DESKTOP],
  ] as const) {
    await page.setViewportSize(size);
    await page.screenshot({ path: join(SHOTS, `${name}-${suffix}.png`), fullPage: true });
  }
  await page.setViewportSize(was);
}
