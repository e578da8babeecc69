/**
 * A fixed set of calls through PricegridClient, printed as one JSON object on stdout for
 * tests/clients/test_typescript_client.py, which makes the same calls with the Python clients
 * on the same server and compares the answers (prices to the last bit).
 *
 *   node dist/test/cases.js plain   target from $PRICEGRID_TARGET, plaintext, no token; and
 *                                   $PRICEGRID_TEST_SILENT, a port that accepts connections
 *                                   and never answers (for the deadlines)
 *   node dist/test/cases.js tls     target, CA, client certificate and token from
 *                                   $PRICEGRID_TARGET/_CA/_CERT/_KEY/_TOKEN (a trader's)
 *
 * Every case records its inputs beside its answer, so that this file is the one place the
 * cases are written. A failed call is recorded as its error (code, message, violations).
 * Typed arrays become JSON arrays, NaN (a failed batch row) null.
 */
import {
  PricegridClient,
  PricegridError,
  type BatchColumns,
  type BatchOptions,
  type EuropeanOption,
  type Market,
  type PriceOptions,
} from "../src/index";

interface PriceCase {
  name: string;
  option: EuropeanOption;
  market: Market;
  options: PriceOptions;
}

const MARKET: Market = { spot: 100, rate: 0.05, dividendYield: 0.01, volatility: 0.2 };
const CALL: EuropeanOption = { optionType: "call", strike: 100, expiry: 0.5 };

const PRICES: PriceCase[] = [
  { name: "bsm_call", option: CALL, market: MARKET, options: { measures: ["delta", "gamma", "vega", "theta", "rho"] } },
  {
    name: "bsm_put_dates",
    option: {
      optionType: "put",
      strike: 95,
      expiry: { valuationDate: "2025-01-02", expiryDate: "2025-07-02", dayCount: "ACT/360" },
    },
    market: MARKET,
    options: { model: "bsm", measures: ["delta", "dividend_rho", "charm"] },
  },
  {
    name: "black76_put",
    option: { optionType: "put", strike: 75, expiry: 1.05 },
    market: { forward: 68.4, rate: 0.028, volatility: 0.45 },
    options: { model: "black76", measures: ["delta", "vega", "vanna", "volga"] },
  },
  {
    name: "bachelier_call",
    option: { optionType: "call", strike: -0.001, expiry: 1 },
    market: { forward: 0.002, rate: 0, volatility: 0.01 },
    options: { model: "bachelier", measures: ["delta", "gamma", "theta"] },
  },
];

const BATCHES: { name: string; columns: BatchColumns; options: BatchOptions }[] = [
  {
    // row 2 has a negative strike: it fails alone, the others price
    name: "years_with_a_bad_row",
    columns: {
      optionType: ["call", "put", "call", "put"],
      strike: [90, 100, -1, 110],
      timeToExpiry: [0.5, 1, 0.5, 0.25],
      spot: 100,
      rate: 0.03,
      dividendYield: 0.01,
      volatility: [0.2, 0.25, 0.2, 0.3],
    },
    options: { model: "bsm", measures: ["price", "delta", "gamma"] },
  },
  {
    name: "dates_black76",
    columns: {
      optionType: "call",
      strike: Float64Array.of(60, 70, 80),
      expiryDate: ["2027-12-15", "2028-06-15", "2028-12-15"],
      valuationDate: "2026-11-24",
      dayCount: "ACT/365F",
      forward: 68.4,
      rate: 0.028,
      volatility: 0.45,
    },
    options: { model: "black76", measures: ["price", "vega"] },
  },
];

/** A call's answer, or its error as data. */
async function outcome<T>(call: () => Promise<T>): Promise<{ ok: T } | { error: object }> {
  try {
    return { ok: await call() };
  } catch (e) {
    return { error: describe(e) };
  }
}

function describe(e: unknown): object {
  if (e instanceof PricegridError) {
    return {
      type: e.name,
      code: e.code,
      codeName: e.codeName,
      details: e.details,
      message: e.message,
      field: e.field ?? null,
      fieldViolations: e.fieldViolations,
      badInput: e.badInput,
    };
  }
  return { type: e instanceof Error ? e.name : typeof e, message: String(e instanceof Error ? e.message : e) };
}

/** A call's outcome and how long it took, in seconds. */
async function timed<T>(call: () => Promise<T>): Promise<{ outcome: object; seconds: number }> {
  const start = performance.now();
  const result = await outcome(call);
  return { outcome: result, seconds: (performance.now() - start) / 1000 };
}

async function plain(): Promise<object> {
  const client = new PricegridClient(); // target from $PRICEGRID_TARGET, 1 s deadlines
  const out: Record<string, unknown> = { target: client.target, timeout: client.timeout };

  out["prices"] = await Promise.all(
    PRICES.map(async (c) => ({ ...c, result: await outcome(() => client.price(c.option, c.market, c.options)) })),
  );

  const premium = (await client.price(CALL, MARKET)).price;
  const ivMarket: Market = { spot: 100, rate: 0.05, dividendYield: 0.01 };
  out["impliedVol"] = { option: CALL, market: ivMarket, price: premium, result: await outcome(() => client.impliedVol(CALL, ivMarket, premium)) };

  out["batches"] = await Promise.all(
    BATCHES.map(async (b) => ({ ...b, result: await outcome(() => client.priceBatch(b.columns, b.options)) })),
  );

  // bad input: every violation at once, each naming its field
  const badOption: EuropeanOption = { optionType: "call", strike: -1, expiry: 0.5 };
  const badMarket: Market = { spot: 100, rate: 0.05, volatility: -0.2 };
  out["badPrice"] = { option: badOption, market: badMarket, result: await outcome(() => client.price(badOption, badMarket)) };
  out["badImpliedVol"] = { price: 1000, result: await outcome(() => client.impliedVol(CALL, ivMarket, 1000)) };
  out["badModel"] = await outcome(() => client.price(CALL, MARKET, { model: "black76" })); // Black-76 needs a forward

  out["serverInfo"] = await outcome(() => client.serverInfo());
  out["health"] = await outcome(() => client.health());
  out["healthPricing"] = await outcome(() => client.health("pricegrid.v1.PricingService"));
  out["healthUnknown"] = await outcome(() => client.health("no.such.Service"));
  // a client-side mistake is refused before anything is sent
  out["unknownMeasure"] = await outcome(() => client.price(CALL, MARKET, { measures: ["speed" as "delta"] }));
  out["spotAndForward"] = await outcome(() => client.price(CALL, { spot: 100, forward: 100, volatility: 0.2 }));
  const feb30: EuropeanOption = { optionType: "put", strike: 95, expiry: { valuationDate: "2025-01-02", expiryDate: "2025-02-30" } };
  out["badDate"] = await outcome(() => client.price(feb30, MARKET));

  const nobody = new PricegridClient({ target: "127.0.0.1:1", timeout: 2 }); // nothing listens there
  out["unreachable"] = await outcome(() => nobody.serverInfo());
  nobody.close();

  // deadlines: the client's default (1 s) and one call's own, against a server that never answers
  const silentTarget = process.env["PRICEGRID_TEST_SILENT"];
  if (!silentTarget) throw new Error("set PRICEGRID_TEST_SILENT to a port that never answers");
  const silent = new PricegridClient({ target: silentTarget });
  const [byDefault, perCall] = await Promise.all([
    timed(() => silent.serverInfo()),
    timed(() => silent.price(CALL, MARKET, { timeout: 0.25 })),
  ]);
  out["deadlines"] = { byDefault, perCall };
  silent.close();

  client.close();
  out["afterClose"] = await outcome(() => client.price(CALL, MARKET));
  return out;
}

async function tls(): Promise<object> {
  // target, CA, client certificate and key, and a trader's token: all from the environment
  const client = new PricegridClient({ timeout: 5 });
  const out: Record<string, unknown> = { target: client.target };
  out["price"] = await outcome(() => client.price(CALL, MARKET, PRICES[0]!.options));
  out["health"] = await outcome(() => client.health());
  out["batch"] = await outcome(() => client.priceBatch(BATCHES[0]!.columns)); // traders may not run batches
  client.close();
  for (const [name, token] of [["badToken", "not-a-jwt"], ["noToken", null]] as const) {
    const other = new PricegridClient({ timeout: 5, token });
    out[name] = await outcome(() => other.price(CALL, MARKET));
    other.close();
  }
  return out;
}

async function main(): Promise<void> {
  const mode = process.argv[2] ?? "plain";
  if (mode !== "plain" && mode !== "tls") throw new Error(`mode is plain or tls, not ${mode}`);
  const out = mode === "plain" ? await plain() : await tls();
  const plainArrays = (_key: string, value: unknown) =>
    ArrayBuffer.isView(value) ? Array.from(value as unknown as ArrayLike<number>) : value;
  process.stdout.write(`${JSON.stringify(out, plainArrays)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
