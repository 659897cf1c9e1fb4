/** Page contents that name their version in every 512-byte sector, so a torn or mixed page is visible. */
export function versionPage(version: number, pageSize = 4096): Uint8Array {
  const page = new Uint8Array(pageSize);
  const view = new DataView(page.buffer);
  for (let s = 0; s < pageSize; s += 512) {
    view.setFloat64(s, version, true);
    page.fill((version * 7 + s / 512) & 0xff || 1, s + 8, s + 512);
  }
  return page;
}
