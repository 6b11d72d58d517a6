import { Duration, Token } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import * as ssm from "aws-cdk-lib/aws-ssm";

/** `PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL`. */
export enum LogLevel {
  DEBUG = "debug",
  INFO = "info",
  WARN = "warn",
  ERROR = "error",
  NONE = "none",
}

/**
 * What the application reads through the agent, and how the agent caches it. The same settings
 * serve a Lambda function (`SecretsAgentLayer.addTo`) and an ECS task (`addSecretsAgentSidecar`):
 * they become the agent's environment variables and exactly the IAM statements those reads need
 * (docs/lambda.md, "IAM permissions").
 */
export interface SecretsAgentSettings {
  /** Secrets the application reads: `secretsmanager:GetSecretValue` on each. */
  readonly secrets?: secretsmanager.ISecret[];
  /**
   * Secrets fetched while the function or task starts (`SECRETS_AGENT_PREFETCH`), so the first
   * read is served from memory. Granted as `secrets` are, plus `secretsmanager:BatchGetSecretValue`
   * (resource `*`, as AWS requires), which prefetch uses to read 20 secrets per call.
   */
  readonly prefetchSecrets?: secretsmanager.ISecret[];
  /** SSM parameters the application reads: `ssm:GetParameter` on each. */
  readonly parameters?: ssm.IParameter[];
  /** Parameters fetched at start (`SECRETS_AGENT_PREFETCH_PARAMETERS`); granted as `parameters`. */
  readonly prefetchParameters?: ssm.IParameter[];
  /**
   * Customer-managed KMS keys of those parameters (SecureString) or secrets: `kms:Decrypt` on
   * each. A secret's own `encryptionKey`, when the construct knows it, is added without being
   * listed here. The AWS managed keys (`aws/secretsmanager`, `aws/ssm`) need no statement.
   */
  readonly encryptionKeys?: kms.IKey[];
  /**
   * How long a value is served from the cache (`SECRETS_MANAGER_TTL`, `SSM_PARAMETER_STORE_TTL`),
   * 0 to 86400 seconds; zero turns caching off. Default: the agent's, 300 s.
   */
  readonly ttl?: Duration;
  /**
   * Entries kept, secrets and parameters together (`PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE`),
   * 0 to 1000; zero turns caching off. Default: the agent's, 1000.
   */
  readonly cacheSize?: number;
  /** `PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL`. Default: the agent's (`info`, or Lambda's log level). */
  readonly logLevel?: LogLevel;
}

/** The agent's environment variables for `settings`. */
export function agentEnvironment(settings: SecretsAgentSettings): Record<string, string> {
  const env: Record<string, string> = {};
  if (settings.ttl !== undefined) {
    const seconds = settings.ttl.toSeconds();
    if (!Token.isUnresolved(seconds) && (seconds < 0 || seconds > 86400)) {
      throw new Error(`secrets-agent: ttl = ${seconds} s: must be from 0 to 86400 seconds (a day)`);
    }
    env.SECRETS_MANAGER_TTL = String(seconds);
    env.SSM_PARAMETER_STORE_TTL = String(seconds);
  }
  if (settings.cacheSize !== undefined) {
    const n = settings.cacheSize;
    if (!Token.isUnresolved(n) && !(Number.isInteger(n) && n >= 0 && n <= 1000)) {
      throw new Error(`secrets-agent: cacheSize = ${n}: must be a whole number from 0 to 1000`);
    }
    env.PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE = String(n);
  }
  if (settings.logLevel !== undefined) {
    env.PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL = settings.logLevel;
  }
  const prefetch = (settings.prefetchSecrets ?? []).map(secretId);
  if (prefetch.length > 0) {
    env.SECRETS_AGENT_PREFETCH = prefetch.join(",");
  }
  const prefetchParameters = (settings.prefetchParameters ?? []).map((p) => p.parameterName);
  if (prefetchParameters.length > 0) {
    env.SECRETS_AGENT_PREFETCH_PARAMETERS = prefetchParameters.join(",");
  }
  return env;
}

/**
 * Grants `grantee` exactly what the agent needs for `settings`:
 * - `secretsmanager:GetSecretValue` on every secret (read or prefetched);
 * - `secretsmanager:DescribeSecret` on them while caching is on (TTL and cache size above zero):
 *   at expiry it tells whether the version changed, so GetSecretValue is called only when it did;
 * - `secretsmanager:BatchGetSecretValue` on `*` only when secrets are prefetched;
 * - `ssm:GetParameter` on every parameter;
 * - `kms:Decrypt` on the customer-managed keys.
 * Nothing is added for settings without secrets, parameters or keys.
 */
export function grantAgentReads(grantee: iam.IGrantable, settings: SecretsAgentSettings): void {
  const secrets = unique([...(settings.secrets ?? []), ...(settings.prefetchSecrets ?? [])]);
  const parameters = unique([...(settings.parameters ?? []), ...(settings.prefetchParameters ?? [])]);
  const keys = unique([
    ...(settings.encryptionKeys ?? []),
    ...secrets.flatMap((s) => (s.encryptionKey ? [s.encryptionKey] : [])),
  ]);
  if (secrets.length > 0) {
    const actions = ["secretsmanager:GetSecretValue"];
    if (cachingOn(settings)) {
      actions.push("secretsmanager:DescribeSecret");
    }
    grant(grantee, actions, secrets.map(secretArnForPolicies));
  }
  if ((settings.prefetchSecrets ?? []).length > 0) {
    // BatchGetSecretValue authorizes each secret with GetSecretValue (granted above); the action
    // itself takes no resource-level permission.
    grant(grantee, ["secretsmanager:BatchGetSecretValue"], ["*"]);
  }
  if (parameters.length > 0) {
    grant(grantee, ["ssm:GetParameter"], parameters.map((p) => p.parameterArn));
  }
  if (keys.length > 0) {
    grant(grantee, ["kms:Decrypt"], keys.map((k) => k.keyArn));
  }
}

function grant(grantee: iam.IGrantable, actions: string[], resourceArns: string[]): void {
  iam.Grant.addToPrincipal({ grantee, actions, resourceArns });
}

function cachingOn(settings: SecretsAgentSettings): boolean {
  const ttl = settings.ttl?.toSeconds();
  return ttl !== 0 && settings.cacheSize !== 0;
}

/** The id the agent is given for a secret: its full ARN when known, else its name. */
function secretId(secret: secretsmanager.ISecret): string {
  return secret.secretFullArn ?? secret.secretName;
}

/**
 * The ARN an IAM statement needs: the full ARN when known; else (a secret imported by name) the
 * name's ARN followed by `-??????`, the six random characters Secrets Manager appends.
 */
function secretArnForPolicies(secret: secretsmanager.ISecret): string {
  return secret.secretFullArn ?? `${secret.secretArn}-??????`;
}

function unique<T>(items: T[]): T[] {
  return [...new Set(items)];
}
