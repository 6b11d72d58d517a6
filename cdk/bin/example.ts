#!/usr/bin/env node
// The example app: `npx cdk synth` / `npx cdk deploy` in cdk/ (docs/cdk.md). Environment-agnostic
// (no account or region lookups), so it synthesizes offline. Context `layerDir` and
// `rustFunctionDir` point at other builds of the layer zips and the Rust example.
import { App, Validations } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { ExampleStack } from "./example-stack";

const app = new App();
new ExampleStack(app, "SecretsAgentExample", {
  layerDir: app.node.tryGetContext("layerDir"),
  rustFunctionDir: app.node.tryGetContext("rustFunctionDir"),
});
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
