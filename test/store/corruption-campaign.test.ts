import { describe, expect, it } from 'vitest';
import { corruptionCampaign } from '../support/corruption-campaign.js';
import { storeDir } from '../support/store-files.js';

// Seeded and replayable; PAGERD_CAMPAIGN_CASES=1000 (or more) for the full-length campaign.
const CASES = Number(process.env.PAGERD_CAMPAIGN_CASES ?? 300);
const SEED = Number(process.env.PAGERD_CAMPAIGN_SEED ?? 7);

describe('a corruption campaign on a stopped store', () => {
  it(`${CASES} random corruptions (bit flips and overwrites of the database, its WAL and the device; rows moved; the WAL deleted after kill -9; an older database restored): each refused, detected (EIO) or harmless, never a wrong answer or an acknowledged page destroyed later`, async () => {
    const { table, bad } = await corruptionCampaign(storeDir('pagerd-campaign-'), SEED, CASES);
    console.log(`corruption campaign, seed ${SEED}, ${CASES} cases: ${JSON.stringify(table)}`);
    expect(bad).toEqual([]);
    expect(table.wrong + table['destroyed later'] + table.crashed).toBe(0);
    expect(table.refused).toBeGreaterThan(0);
    expect(table.detected).toBeGreaterThan(0);
  }, 300_000);
});
