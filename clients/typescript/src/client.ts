/**
 * The pricegrid client for TypeScript: one trade, an implied volatility, a columnar batch,
 * the server's info and health, over @grpc/grpc-js with the messages and clients protobuf-ts
 * generates from proto/pricegrid/v1 (see `npm run generate`).
 *
 * ```ts
 * import { PricegridClient } from "@pricegrid/client";
 *
 * const client = new PricegridClient(); // $PRICEGRID_TARGET or 127.0.0.1:50051, 1 s deadlines
 * const r = await client.price(
 *   { optionType: "call", strike: 100, expiry: 0.5 },
 *   { spot: 100, rate: 0.05, dividendYield: 0.01, volatility: 0.2 },
 *   { measures: ["delta", "vega"] },
 * );
 * console.log(r.price, r.greeks.delta, r.pricedBy.version);
 * client.close();
 * ```
 *
 * Names follow the Python client (`FrontOfficeClient`, `RiskClient.price_batch`) in camelCase;
 * names the contract spells as data (models, measures, day counts, row status) are the Python
 * client's strings: `"bsm"`, `"dividend_rho"`, `"ACT/360"`, `"INVALID_ARGUMENT"`. Units are
 * those of proto/pricegrid/v1/common.proto. Every method returns a Promise and rejects with a
 * {@link PricegridError} when the call fails.
 */
import { randomUUID } from "node:crypto";
import { readFileSync, statSync } from "node:fs";

import { BinaryReader, BinaryWriter, WireType } from "@protobuf-ts/runtime";
import {
  credentials as grpcCredentials,
  Metadata,
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ServiceError,
} from "@grpc/grpc-js";

import { codeName, PricegridError } from "./errors";
import {
  DayCount,
  Encoding,
  Engine,
  GreekMethod,
  Measure,
  Model,
  OptionType as OptionTypeCode,
  type Date as DateMessage,
  type DoubleColumn,
  type Int32Column,
  type ModelRef as ModelRefMessage,
} from "./gen/pricegrid/v1/common";
import {
  ImpliedVolatilityRequest,
  PriceBatchRequest,
  PriceRequest,
  type EffectiveInputColumns,
  type EffectiveInputs as EffectiveInputsMessage,
  type EuropeanOption as EuropeanOptionMessage,
  type ImpliedVolatilityResponse,
  type Market as MarketMessage,
  type MarketUsed as MarketUsedMessage,
  type PriceBatchResponse,
  type PriceResponse,
  type ServerInfoResponse,
} from "./gen/pricegrid/v1/pricing";
import { PricingServiceClient } from "./gen/pricegrid/v1/pricing.grpc-client";

/** The target when neither the `target` option nor `$PRICEGRID_TARGET` names one. */
export const DEFAULT_TARGET = "127.0.0.1:50051";
/** The deadline of every call, in seconds, unless the client or the call sets another. */
export const DEFAULT_TIMEOUT = 1.0;

/** `$PRICEGRID_TARGET`, else `127.0.0.1:50051` (as the Python client). */
export function defaultTarget(): string {
  return process.env["PRICEGRID_TARGET"] || DEFAULT_TARGET;
}

// ------------------------------------------------------------------------------- inputs
/** `"bsm"` (Black-Scholes-Merton on a spot), `"black76"` and `"bachelier"` (on a forward),
 * `"heston"` (a spot; parameters in `Market.heston`). */
export type ModelName = "bsm" | "black76" | "bachelier" | "heston";
export type OptionType = "call" | "put";
export type DayCountName = "ACT/365F" | "ACT/360" | "ACT/ACT ISDA" | "30/360";
export type GreekName = "delta" | "gamma" | "vega" | "theta" | "rho" | "dividend_rho" | "vanna" | "volga" | "charm";
/** What a call may ask for besides the price (`"price"` may be named; it always comes back). */
export type MeasureName = "price" | GreekName;
/** A calendar date as `"YYYY-MM-DD"` (no time, no time zone). */
export type IsoDate = string;

/** Time to expiry from two dates and a day count (default `"ACT/365F"`). */
export interface ExpiryDates {
  valuationDate: IsoDate;
  expiryDate: IsoDate;
  dayCount?: DayCountName;
}

export interface EuropeanOption {
  optionType: OptionType;
  strike: number;
  /** A year fraction, or dates. */
  expiry: number | ExpiryDates;
}

export interface HestonParameters {
  v0: number;
  kappa: number;
  theta: number;
  sigma: number;
  rho: number;
}

/** Market inputs, inline (`spot` for bsm and heston, `forward` for black76 and bachelier), or
 * from a snapshot the server holds (`snapshotId` with `underlyingId`). */
export interface Market {
  spot?: number;
  forward?: number;
  /** Continuously compounded zero rate, per 1.00 (default 0). */
  rate?: number;
  dividendYield?: number;
  /** Lognormal (bsm, black76) or normal (bachelier) volatility per 1.00; read from the
   * snapshot's surface when left out with a snapshot; ignored by impliedVol. */
  volatility?: number;
  snapshotId?: string;
  underlyingId?: string;
  heston?: HestonParameters;
}

/** Per call: the deadline in seconds (`null`: none; default the client's `timeout`). */
export interface CallSettings {
  timeout?: number | null;
}

export interface PriceOptions extends CallSettings {
  model?: ModelName;
  /** Greeks wanted besides the price, e.g. `["delta", "gamma", "vega"]`. */
  measures?: readonly MeasureName[];
}

export interface ImpliedVolOptions extends CallSettings {
  model?: ModelName;
}

/** A column: one number per row, or one number for every row. */
export type Column = number | readonly number[] | Float64Array;

/** A batch of European options as columns (length 1 or a scalar broadcasts to every row). */
export interface BatchColumns {
  optionType: OptionType | readonly OptionType[];
  strike: Column;
  /** Year fractions, or `expiryDate` with one `valuationDate` and `dayCount`. */
  timeToExpiry?: Column;
  expiryDate?: IsoDate | readonly IsoDate[];
  valuationDate?: IsoDate;
  dayCount?: DayCountName;
  spot?: Column;
  forward?: Column;
  /** Default 0. */
  rate?: Column;
  dividendYield?: Column;
  volatility: Column;
}

export interface BatchOptions extends CallSettings {
  model?: ModelName;
  /** The measures, in the order wanted (default `["price"]`). */
  measures?: readonly MeasureName[];
  /** Kernel threads for this request (0: the server's default). */
  threads?: number;
  /** Return the effective inputs (forward, discount factor, time, vol) per row (default true). */
  effectiveInputs?: boolean;
}

// ------------------------------------------------------------------------------ results
/** Each Greek is present only when it was asked for. */
export interface Greeks {
  delta?: number;
  gamma?: number;
  vega?: number;
  theta?: number;
  rho?: number;
  dividendRho?: number;
  vanna?: number;
  volga?: number;
  charm?: number;
  /** vega / 100 (one vol point) */
  vegaPerPoint?: number;
  /** theta / 365 */
  thetaPerDay?: number;
}

/** Which model, engine and engine version produced a result (for audit). */
export interface ModelRef {
  model: string;
  engine: string;
  version: string;
}

/** The inputs the model used, after dates became a year fraction and the spot a forward. */
export interface EffectiveInputs {
  forward: number;
  discountFactor: number;
  timeToExpiry: number;
  volatility: number;
}

/** The market data a price took from a snapshot. */
export interface MarketUsed {
  snapshotId: string;
  underlyingId: string;
  discountCurve: string;
  dividendCurve: string;
  dividends: number;
  volSurface: string;
}

export interface PriceResult {
  price: number;
  greeks: Greeks;
  /** Every measure returned by name, the price included. */
  values: Record<string, number>;
  /** Measure name -> how it was obtained (`"analytic"`, `"finite_difference"`, ...). */
  methods: Record<string, string>;
  /** Monte Carlo: the price's standard error (0 otherwise). */
  standardError: number;
  inputs?: EffectiveInputs;
  pricedBy: ModelRef;
  /** Set when the market came from a snapshot. */
  market?: MarketUsed;
}

export interface ImpliedVolResult {
  volatility: number;
  inputs?: EffectiveInputs;
  pricedBy: ModelRef;
}

/** An error on one row of a batch. */
export interface RowError {
  row: number;
  code: number;
  codeName: string;
  field: string;
  message: string;
}

export interface BatchResult {
  rows: number;
  /** Measure name -> one value per row, in the order asked; failed rows hold NaN. */
  columns: Record<string, Float64Array>;
  /** The gRPC code of each row (0 OK, 3 INVALID_ARGUMENT, 11 OUT_OF_RANGE). */
  status: Int32Array;
  /** The first failed rows the server described (it caps them; `errorCount` counts all). */
  errors: RowError[];
  errorCount: number;
  /** `forward`, `discountFactor`, `timeToExpiry`, `volatility` per row (empty when not asked). */
  inputs: Record<string, Float64Array>;
  pricedBy: ModelRef;
  market?: MarketUsed;
}

export interface ServerLimits {
  maxMessageBytes: number;
  maxRows: number;
  defaultDeadlineSeconds: number;
  parallelThresholdRows: number;
  chunkRows: number;
  maxStreamTrades: number;
  maxTradeMessageBytes: number;
  maxStreamMessageBytes: number;
  maxCostUnarySeconds: number;
  maxCostBatchSeconds: number;
}

export interface ModelInfo {
  ref: ModelRef;
  /** `"bsm"`, `"black76"`, `"bachelier"`, `"heston"` */
  model: string;
  instruments: string[];
  measures: string[];
  validatedAgainst: string;
  engine: string;
  methods: string[];
  defaultEngine: boolean;
}

export interface ServerInfo {
  version: string;
  kernelThreads: number;
  limits: ServerLimits;
  models: ModelInfo[];
  versions: Record<string, string>;
  startedAt: string;
}

/** grpc.health.v1 serving status. */
export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

// ------------------------------------------------------------------------------- client
/** PEM files: the CAs that sign the server's certificate, and this client's certificate and
 * key for mutual TLS. */
export interface TlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
}

export interface ClientOptions {
  /** `"host:port"` or any gRPC target (default `$PRICEGRID_TARGET` or `127.0.0.1:50051`). */
  target?: string;
  /** The deadline of every call in seconds (default 1; `null`: none). */
  timeout?: number | null;
  /** TLS from PEM files (default: `$PRICEGRID_CA`/`CERT`/`KEY`, else plaintext). */
  tls?: TlsFiles;
  /** Channel credentials made by the caller (instead of `tls`). */
  credentials?: ChannelCredentials;
  /** A bearer token (JWT) sent with every call (default `$PRICEGRID_TOKEN`, else the file
   * `$PRICEGRID_TOKEN_FILE`, read again when it changes; `null`: none). */
  token?: string | null;
  /** Extra grpc-js channel options (override the client's own). */
  channelOptions?: ChannelOptions;
}

const PRICING_SERVICE = "pricegrid.v1.PricingService";
const HEALTH_CHECK = "/grpc.health.v1.Health/Check";

/** Retries on UNAVAILABLE by gRPC itself, 3 attempts (the Python client's RetryConfig()). */
const SERVICE_CONFIG = {
  methodConfig: [
    {
      name: [{ service: PRICING_SERVICE }],
      retryPolicy: {
        maxAttempts: 3,
        initialBackoff: "0.05s",
        maxBackoff: "1s",
        backoffMultiplier: 2,
        retryableStatusCodes: ["UNAVAILABLE"],
      },
    },
  ],
};

const CHANNEL_DEFAULTS: ChannelOptions = {
  "grpc.service_config": JSON.stringify(SERVICE_CONFIG),
  // the server's own limits apply (ServerInfo.limits); none of gRPC's 4 MiB defaults here
  "grpc.max_receive_message_length": -1,
  "grpc.max_send_message_length": -1,
  // a ping every 30 s while a call is open (pricegrid serve allows one every 10 s)
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
};

type Callback<T> = (error: ServiceError | null, response?: T) => void;

/**
 * Price single trades and batches over gRPC (see the module comment for an example).
 * Open one per process and share it; `close()` when done.
 */
export class PricegridClient {
  readonly target: string;
  /** The deadline of every call in seconds (`null`: none). */
  readonly timeout: number | null;
  private readonly stub: PricingServiceClient;
  private readonly token: TokenSource | undefined;
  private closed = false;

  constructor(options: ClientOptions = {}) {
    this.target = options.target || defaultTarget();
    this.timeout = checkTimeout(options.timeout === undefined ? DEFAULT_TIMEOUT : options.timeout);
    this.token = tokenSource(options.token);
    this.stub = new PricingServiceClient(this.target, channelCredentials(options), {
      ...CHANNEL_DEFAULTS,
      ...options.channelOptions,
    });
  }

  /** Price one European option; `measures` names the Greeks wanted besides the price. */
  async price(option: EuropeanOption, market: Market, options: PriceOptions = {}): Promise<PriceResult> {
    const request = PriceRequest.create({
      model: modelCode(options.model ?? "bsm"),
      instrument: { oneofKind: "european", european: europeanMessage(option) },
      market: marketMessage(market),
      measures: measureCodes(options.measures ?? []),
    });
    const response = await this.call<PriceResponse>(options.timeout, (md, o, cb) => this.stub.price(request, md, o, cb));
    return priceResult(response);
  }

  /** The volatility at which `model` prices `option` at `price` (market.volatility is ignored). */
  async impliedVol(
    option: EuropeanOption,
    market: Market,
    price: number,
    options: ImpliedVolOptions = {},
  ): Promise<ImpliedVolResult> {
    const request = ImpliedVolatilityRequest.create({
      model: modelCode(options.model ?? "bsm"),
      instrument: { oneofKind: "european", european: europeanMessage(option) },
      market: marketMessage(market),
      price,
    });
    const response = await this.call<ImpliedVolatilityResponse>(options.timeout, (md, o, cb) =>
      this.stub.impliedVolatility(request, md, o, cb),
    );
    return {
      volatility: response.volatility,
      ...(response.inputs ? { inputs: effectiveInputs(response.inputs) } : {}),
      pricedBy: modelRef(response.pricedBy),
    };
  }

  /**
   * Price a batch of European options given as columns, in one PriceBatch call (the server's
   * `limits.maxRows` and `maxMessageBytes` bound it; the Python RiskClient splits bigger ones).
   * One bad row fails only itself: see `status` and `errors`.
   */
  async priceBatch(columns: BatchColumns, options: BatchOptions = {}): Promise<BatchResult> {
    const measures = measureCodes(options.measures ?? ["price"]);
    const dates = columns.expiryDate !== undefined;
    const request = PriceBatchRequest.create({
      model: modelCode(options.model ?? "bsm"),
      measures: measures.length ? measures : [Measure.PRICE],
      instruments: {
        oneofKind: "european",
        european: {
          optionType: int32Column(asArray(columns.optionType).map(optionTypeCode)),
          timeToExpiry: doubleColumn(columns.timeToExpiry),
          expiryDate: dates ? int32Column(asArray(columns.expiryDate ?? []).map(epochDays)) : undefined,
          valuationDate: columns.valuationDate === undefined ? undefined : dateMessage(columns.valuationDate),
          dayCount: dates ? dayCountCode(columns.dayCount ?? "ACT/365F") : DayCount.UNSPECIFIED,
          strike: doubleColumn(columns.strike),
        },
      },
      market: {
        spot: doubleColumn(columns.spot),
        forward: doubleColumn(columns.forward),
        rate: doubleColumn(columns.rate ?? 0),
        dividendYield: doubleColumn(columns.dividendYield),
        volatility: doubleColumn(columns.volatility),
        snapshotId: "",
        underlyingId: "",
      },
      outputEncoding: Encoding.RAW,
      omitEffectiveInputs: options.effectiveInputs === false,
      threads: options.threads ?? 0,
    });
    const response = await this.call<PriceBatchResponse>(options.timeout, (md, o, cb) =>
      this.stub.priceBatch(request, md, o, cb),
    );
    return batchResult(response);
  }

  /** The server's version, kernel threads, limits and models. */
  async serverInfo(settings: CallSettings = {}): Promise<ServerInfo> {
    const response = await this.call<ServerInfoResponse>(settings.timeout, (md, o, cb) =>
      this.stub.serverInfo({}, md, o, cb),
    );
    return serverInfo(response);
  }

  /** grpc.health.v1 Check of `service` (`""`: the whole server). */
  async health(service = "", settings: CallSettings = {}): Promise<HealthStatus> {
    return this.call<HealthStatus>(settings.timeout, (md, o, cb) =>
      this.stub.makeUnaryRequest(HEALTH_CHECK, encodeHealthCheck, decodeHealthStatus, service, md, o, cb),
    );
  }

  /** Close the channel; later calls reject. */
  close(): void {
    if (!this.closed) {
      this.closed = true;
      this.stub.close();
    }
  }

  private call<T>(
    timeout: number | null | undefined,
    start: (metadata: Metadata, options: CallOptions, callback: Callback<T>) => unknown,
  ): Promise<T> {
    if (this.closed) return Promise.reject(new Error("the client is closed"));
    const seconds = timeout === undefined ? this.timeout : checkTimeout(timeout);
    const options: CallOptions = seconds === null ? {} : { deadline: Date.now() + seconds * 1000 };
    const metadata = new Metadata();
    metadata.set("x-request-id", randomUUID().replace(/-/g, ""));
    const token = this.token?.token();
    if (token) metadata.set("authorization", `Bearer ${token}`);
    return new Promise<T>((resolve, reject) => {
      start(metadata, options, (error, response) => {
        if (error) reject(PricegridError.fromServiceError(error));
        else resolve(response as T);
      });
    });
  }
}

// ------------------------------------------------------------------ credentials, tokens
function channelCredentials(options: ClientOptions): ChannelCredentials {
  if (options.credentials) return options.credentials;
  const env = process.env;
  const tls: TlsFiles | undefined =
    options.tls ??
    (env["PRICEGRID_CA"] || env["PRICEGRID_CERT"] || env["PRICEGRID_KEY"]
      ? { ca: env["PRICEGRID_CA"] || undefined, cert: env["PRICEGRID_CERT"] || undefined, key: env["PRICEGRID_KEY"] || undefined }
      : undefined);
  if (tls === undefined) return grpcCredentials.createInsecure();
  if (!tls.cert !== !tls.key) throw new TypeError("mutual TLS needs both a certificate and its key");
  const read = (path: string | undefined) => (path ? readFileSync(path) : null);
  return grpcCredentials.createSsl(read(tls.ca), read(tls.key), read(tls.cert));
}

/** A bearer token: fixed, or read from a file again whenever its modification time changes. */
class TokenSource {
  private mtime = -1;
  constructor(
    private value: string,
    private readonly file?: string,
  ) {
    if (file !== undefined) this.token(); // a missing or empty file is an error now
  }

  token(): string {
    if (this.file === undefined) return this.value;
    const mtime = statSync(this.file).mtimeMs;
    if (mtime !== this.mtime) {
      const text = readFileSync(this.file, "utf8").trim();
      if (!text) throw new Error(`token file ${this.file} is empty`);
      this.value = text;
      this.mtime = mtime;
    }
    return this.value;
  }
}

function tokenSource(token: string | null | undefined): TokenSource | undefined {
  if (token === null) return undefined;
  if (token !== undefined) return new TokenSource(token.trim());
  const env = process.env;
  if (env["PRICEGRID_TOKEN"]) return new TokenSource(env["PRICEGRID_TOKEN"].trim());
  if (env["PRICEGRID_TOKEN_FILE"]) return new TokenSource("", env["PRICEGRID_TOKEN_FILE"]);
  return undefined;
}

function checkTimeout(timeout: number | null): number | null {
  if (timeout !== null && !(timeout > 0)) throw new RangeError("timeout must be > 0 seconds (or null for no deadline)");
  return timeout;
}

// ---------------------------------------------------------------------- names and codes
const MODELS: Record<ModelName, Model> = {
  bsm: Model.BLACK_SCHOLES_MERTON,
  black76: Model.BLACK_76,
  bachelier: Model.BACHELIER,
  heston: Model.HESTON,
};
const DAY_COUNTS: Record<DayCountName, DayCount> = {
  "ACT/365F": DayCount.ACT_365F,
  "ACT/360": DayCount.ACT_360,
  "ACT/ACT ISDA": DayCount.ACT_ACT_ISDA,
  "30/360": DayCount.THIRTY_360,
};
const OPTION_TYPES: Record<OptionType, OptionTypeCode> = {
  call: OptionTypeCode.CALL,
  put: OptionTypeCode.PUT,
};

function lookup<K extends string, V>(table: Record<K, V>, key: string, what: string): V {
  if (Object.prototype.hasOwnProperty.call(table, key)) return table[key as K];
  throw new RangeError(`unknown ${what} ${JSON.stringify(key)}; expected one of ${Object.keys(table).join(", ")}`);
}

const modelCode = (name: string): Model => lookup(MODELS, name, "model");
const dayCountCode = (name: string): DayCount => lookup(DAY_COUNTS, name, "day count");
const optionTypeCode = (name: string): OptionTypeCode => lookup(OPTION_TYPES, name, "option type");

/** `"dividend_rho"` -> Measure.DIVIDEND_RHO, from the generated enum (no copy kept). */
function measureCodes(names: readonly string[]): Measure[] {
  const enumTable = Measure as unknown as Record<string, number>;
  return names.map((name) => {
    const code = name === name.toLowerCase() ? enumTable[name.toUpperCase()] : undefined;
    if (typeof code !== "number" || code === 0) throw new RangeError(`unknown measure ${JSON.stringify(name)}`);
    return code as Measure;
  });
}

/** An enum value's name, lower case (protobuf-ts drops the prefix): GreekMethod 1 -> "analytic". */
function enumName(table: object, code: number): string {
  const name = (table as Record<number, string | undefined>)[code];
  return typeof name === "string" ? name.toLowerCase() : String(code);
}
const measureName = (code: number) => enumName(Measure, code);
const methodName = (code: number) => enumName(GreekMethod, code);
const MODEL_NAMES = new Map<number, string>(Object.entries(MODELS).map(([name, code]) => [code, name]));

// ------------------------------------------------------------------------------ messages
const EMPTY = new Uint8Array(0);
const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

function dateMessage(text: IsoDate): DateMessage {
  const m = ISO_DATE.exec(text);
  const [year, month, day] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
  const check = new Date(Date.UTC(year, month - 1, day));
  if (!m || check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day) {
    throw new RangeError(`not a date "YYYY-MM-DD": ${JSON.stringify(text)}`);
  }
  return { year, month, day };
}

/** Days since 1970-01-01 (the contract's expiry_date column). */
function epochDays(text: IsoDate): number {
  const d = dateMessage(text);
  return Date.UTC(d.year, d.month - 1, d.day) / 86_400_000;
}

function europeanMessage(option: EuropeanOption): EuropeanOptionMessage {
  const kind: NonNullable<EuropeanOptionMessage["expiry"]>["kind"] =
    typeof option.expiry === "number"
      ? { oneofKind: "yearFraction", yearFraction: option.expiry }
      : {
          oneofKind: "dates",
          dates: {
            valuationDate: dateMessage(option.expiry.valuationDate),
            expiryDate: dateMessage(option.expiry.expiryDate),
            dayCount: dayCountCode(option.expiry.dayCount ?? "ACT/365F"),
          },
        };
  return { optionType: optionTypeCode(option.optionType), strike: option.strike, expiry: { kind } };
}

function marketMessage(market: Market): MarketMessage {
  if (market.spot !== undefined && market.forward !== undefined) {
    throw new TypeError("give the market a spot or a forward, not both");
  }
  const underlying: MarketMessage["underlying"] =
    market.spot !== undefined
      ? { oneofKind: "spot", spot: market.spot }
      : market.forward !== undefined
        ? { oneofKind: "forward", forward: market.forward }
        : { oneofKind: undefined };
  return {
    underlying,
    rate: market.rate ?? 0,
    dividendYield: market.dividendYield ?? 0,
    volatility: market.volatility ?? 0,
    snapshotId: market.snapshotId ?? "",
    ...(market.heston ? { heston: { ...market.heston } } : {}),
    underlyingId: market.underlyingId ?? "",
  };
}

function asArray<T>(value: T | readonly T[]): readonly T[] {
  return Array.isArray(value) ? (value as readonly T[]) : [value as T];
}

function doubleColumn(column: Column | undefined): DoubleColumn | undefined {
  if (column === undefined) return undefined;
  return { values: typeof column === "number" ? [column] : Array.from(column), raw: EMPTY };
}

function int32Column(values: readonly number[]): Int32Column {
  return { values: [...values], raw: EMPTY };
}

/** A column of the reply: packed values or raw little-endian float64 bytes. */
function readDoubles(column: DoubleColumn | undefined): Float64Array {
  if (column === undefined) return new Float64Array(0);
  if (column.values.length) return Float64Array.from(column.values);
  const view = new DataView(column.raw.buffer, column.raw.byteOffset, column.raw.byteLength);
  const out = new Float64Array(column.raw.byteLength / 8);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat64(i * 8, true);
  return out;
}

function readInt32s(column: Int32Column | undefined, rows: number): Int32Array {
  if (column === undefined) return new Int32Array(rows); // absent: every row OK
  if (column.values.length) return Int32Array.from(column.values);
  const view = new DataView(column.raw.buffer, column.raw.byteOffset, column.raw.byteLength);
  const out = new Int32Array(column.raw.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt32(i * 4, true);
  return out;
}

function modelRef(ref: ModelRefMessage | undefined): ModelRef {
  return { model: ref?.model ?? "", engine: ref?.engine ?? "", version: ref?.version ?? "" };
}

function effectiveInputs(m: EffectiveInputsMessage): EffectiveInputs {
  return { forward: m.forward, discountFactor: m.discountFactor, timeToExpiry: m.timeToExpiry, volatility: m.volatility };
}

function marketUsed(m: MarketUsedMessage): MarketUsed {
  return {
    snapshotId: m.snapshotId,
    underlyingId: m.underlyingId,
    discountCurve: m.discountCurve,
    dividendCurve: m.dividendCurve,
    dividends: m.dividends,
    volSurface: m.volSurface,
  };
}

function priceResult(r: PriceResponse): PriceResult {
  const greeks: Greeks = {};
  for (const [name, value] of Object.entries(r.greeks ?? {})) {
    if (typeof value === "number") greeks[name as keyof Greeks] = value;
  }
  const values: Record<string, number> = {};
  const methods: Record<string, string> = {};
  for (const d of r.details) {
    values[measureName(d.measure)] = d.value;
    methods[measureName(d.measure)] = methodName(d.method);
  }
  return {
    price: r.price,
    greeks,
    values,
    methods,
    standardError: r.standardError,
    ...(r.inputs ? { inputs: effectiveInputs(r.inputs) } : {}),
    pricedBy: modelRef(r.pricedBy),
    ...(r.market ? { market: marketUsed(r.market) } : {}),
  };
}

function inputColumns(m: EffectiveInputColumns | undefined): Record<string, Float64Array> {
  if (m === undefined) return {};
  return {
    forward: readDoubles(m.forward),
    discountFactor: readDoubles(m.discountFactor),
    timeToExpiry: readDoubles(m.timeToExpiry),
    volatility: readDoubles(m.volatility),
  };
}

function batchResult(r: PriceBatchResponse): BatchResult {
  const columns: Record<string, Float64Array> = {};
  for (const c of r.columns) columns[measureName(c.measure)] = readDoubles(c.values);
  const rows = Number(r.rows);
  return {
    rows,
    columns,
    status: readInt32s(r.status, rows),
    errors: r.errors.map((e) => ({ row: Number(e.row), code: e.code, codeName: codeName(e.code), field: e.field, message: e.message })),
    errorCount: Number(r.errorCount),
    inputs: inputColumns(r.inputs),
    pricedBy: modelRef(r.pricedBy),
    ...(r.market ? { market: marketUsed(r.market) } : {}),
  };
}

function serverInfo(r: ServerInfoResponse): ServerInfo {
  const l = r.limits;
  return {
    version: r.version,
    kernelThreads: r.kernelThreads,
    limits: {
      maxMessageBytes: Number(l?.maxMessageBytes ?? 0),
      maxRows: Number(l?.maxRows ?? 0),
      defaultDeadlineSeconds: l?.defaultDeadlineSeconds ?? 0,
      parallelThresholdRows: Number(l?.parallelThresholdRows ?? 0),
      chunkRows: Number(l?.chunkRows ?? 0),
      maxStreamTrades: l?.maxStreamTrades ?? 0,
      maxTradeMessageBytes: Number(l?.maxTradeMessageBytes ?? 0),
      maxStreamMessageBytes: Number(l?.maxStreamMessageBytes ?? 0),
      maxCostUnarySeconds: l?.maxCostUnarySeconds ?? 0,
      maxCostBatchSeconds: l?.maxCostBatchSeconds ?? 0,
    },
    models: r.models.map((m) => ({
      ref: modelRef(m.ref),
      model: MODEL_NAMES.get(m.model) ?? String(m.model),
      instruments: [...m.instruments],
      measures: m.measures.map(measureName),
      validatedAgainst: m.validatedAgainst,
      engine: m.engine ? enumName(Engine, m.engine) : "",
      methods: m.methods.map(methodName),
      defaultEngine: m.defaultEngine,
    })),
    versions: { ...r.versions },
    startedAt: r.startedAt,
  };
}

// --------------------------------------------------------------------- grpc.health.v1
// HealthCheckRequest { string service = 1; } and HealthCheckResponse { ServingStatus status
// = 1; }: two fields, written out here because no health.proto ships with the packages the
// generator reads (grpcio-health-checking installs only its generated Python).
const SERVING_STATUS: readonly HealthStatus[] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

function encodeHealthCheck(service: string): Buffer {
  const writer = new BinaryWriter();
  if (service) writer.tag(1, WireType.LengthDelimited).string(service);
  return Buffer.from(writer.finish());
}

function decodeHealthStatus(data: Buffer): HealthStatus {
  const reader = new BinaryReader(data);
  let code = 0;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.Varint) code = reader.int32();
    else reader.skip(wireType);
  }
  return SERVING_STATUS[code] ?? "UNKNOWN";
}
