/**
 * One error type for every failed call, built from gRPC's rich status (as the Python
 * client's `PricingError`).
 *
 * The server answers a bad request with `INVALID_ARGUMENT` (or `RESOURCE_EXHAUSTED` for a
 * request over its limits) and a `google.rpc.Status` in the `grpc-status-details-bin`
 * trailer whose details hold a `google.rpc.BadRequest` naming each offending field:
 *
 * ```ts
 * try {
 *   await client.price({ optionType: "call", strike: -1, expiry: 0.5 }, market);
 * } catch (e) {
 *   if (e instanceof PricegridError) console.log(e.codeName, e.field, e.fieldViolations);
 *   // INVALID_ARGUMENT european.strike [{ field: "european.strike", description: "must be > 0" }]
 * }
 * ```
 */
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";

import { Any } from "./gen/google/protobuf/any";
import { BadRequest } from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";

const STATUS_DETAILS_KEY = "grpc-status-details-bin";

/** Codes that mean "the request was wrong" (the Python client's `BAD_INPUT_CODES`). */
const BAD_INPUT_CODES: ReadonlySet<number> = new Set([
  status.INVALID_ARGUMENT,
  status.OUT_OF_RANGE,
  status.FAILED_PRECONDITION,
  status.RESOURCE_EXHAUSTED,
  status.NOT_FOUND,
]);

/** One offending field of a request, as the server named it. */
export interface FieldViolation {
  /** The field's path as sent, e.g. `"european.strike"` or `"market.volatility"`. */
  field: string;
  description: string;
}

/** The name of a gRPC status code (`"INVALID_ARGUMENT"`; `"UNKNOWN"` for a number gRPC lacks). */
export function codeName(code: number): string {
  const name = (status as unknown as Record<number, string | undefined>)[code];
  return typeof name === "string" ? name : "UNKNOWN";
}

/**
 * A call failed: `code` (the gRPC status number), `codeName`, the server's `details` and the
 * `fieldViolations` it named, if any. `message` reads as the Python client's:
 * `"INVALID_ARGUMENT: ... (european.strike: must be > 0)"`.
 */
export class PricegridError extends Error {
  override readonly name = "PricegridError";
  readonly code: number;
  readonly codeName: string;
  readonly details: string;
  readonly fieldViolations: readonly FieldViolation[];

  constructor(code: number, details: string, fieldViolations: readonly FieldViolation[] = []) {
    const name = codeName(code);
    const fields = fieldViolations
      .filter((v) => v.field)
      .map((v) => (v.description && v.description !== details ? `${v.field}: ${v.description}` : v.field))
      .join(", ");
    super(fields ? `${name}: ${details} (${fields})` : `${name}: ${details}`);
    this.code = code;
    this.codeName = name;
    this.details = details;
    this.fieldViolations = fieldViolations;
  }

  /** The first offending field's path, or `undefined`. */
  get field(): string | undefined {
    return this.fieldViolations[0]?.field;
  }

  /** Whether the request itself was wrong (as opposed to the server or the network). */
  get badInput(): boolean {
    return BAD_INPUT_CODES.has(this.code);
  }

  /** Build from a failed grpc-js call, reading BadRequest field violations from its trailer. */
  static fromServiceError(error: ServiceError): PricegridError {
    const code = typeof error.code === "number" ? error.code : status.UNKNOWN;
    let details = error.details ?? "";
    let violations: FieldViolation[] = [];
    const rich = richStatus(error.metadata);
    if (rich !== undefined) {
      details = details || rich.message;
      violations = fieldViolations(rich);
    }
    return new PricegridError(code, details || codeName(code).toLowerCase().replace(/_/g, " "), violations);
  }
}

/** The google.rpc.Status the server put in the trailer, if any (undefined when unreadable). */
export function richStatus(metadata: Metadata | undefined): Status | undefined {
  const value = metadata?.get(STATUS_DETAILS_KEY)[0];
  if (value === undefined || typeof value === "string") return undefined;
  try {
    return Status.fromBinary(value);
  } catch {
    return undefined;
  }
}

/** Every BadRequest field violation in a google.rpc.Status, in the server's order. */
export function fieldViolations(rich: Status): FieldViolation[] {
  const out: FieldViolation[] = [];
  for (const detail of rich.details) {
    if (!Any.contains(detail, BadRequest)) continue;
    for (const v of Any.unpack(detail, BadRequest).fieldViolations) {
      out.push({ field: v.field, description: v.description });
    }
  }
  return out;
}
