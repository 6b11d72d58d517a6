/**
 * AWS CDK constructs for secrets-agent (docs/cdk.md):
 * - `SecretsAgentLayer`: the Lambda extension as one layer per architecture; `addTo(fn, options)`
 *   attaches the right one, sets the agent's variables and grants the reads;
 * - `addSecretsAgentSidecar(taskDefinition, props)`: the agent beside an ECS application;
 * - `agentEnvironment` and `grantAgentReads`: the settings' variables and IAM, for other uses.
 */
export * from "./settings";
export * from "./layer";
export * from "./sidecar";
