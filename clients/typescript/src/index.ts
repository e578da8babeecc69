/** @pricegrid/client: the pricegrid gRPC API for TypeScript (see client.ts). */
export * from "./client";
export { codeName, PricegridError, type FieldViolation } from "./errors";
/** The generated contract, for calls the wrapper does not cover (e.g. `pricing.PricingServiceClient`). */
export * as common from "./gen/pricegrid/v1/common";
export * as pricing from "./gen/pricegrid/v1/pricing";
export * as pricingClient from "./gen/pricegrid/v1/pricing.grpc-client";
export * as market from "./gen/pricegrid/v1/market";
export * as risk from "./gen/pricegrid/v1/risk";
