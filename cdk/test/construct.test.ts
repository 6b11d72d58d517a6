// The constructs' synthesized CloudFormation, checked with aws-cdk-lib/assertions; the example
// app synthesized under cdk-nag's AwsSolutions pack. Runs offline: environment-agnostic stacks,
// and placeholder layer zips in a temporary folder (the real ones need `make layer-all`, and
// the arm64 one cannot be built everywhere).
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { App, Duration, Stack, Validations } from "aws-cdk-lib";
import { Match, Template } from "aws-cdk-lib/assertions";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as kms from "aws-cdk-lib/aws-kms";
import * as lambda from "aws-cdk-lib/aws-lambda";
import * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import * as ssm from "aws-cdk-lib/aws-ssm";
import { AwsSolutionsChecks } from "cdk-nag";
import { ExampleStack } from "../bin/example-stack";
import { addSecretsAgentSidecar, LogLevel, SecretsAgentLayer, SecretsAgentFunctionOptions } from "../lib";

const REPO = path.join(__dirname, "..", "..", "..");

/** A folder with both layer zips (each an empty zip archive) and a Rust `bootstrap`. */
function placeholders(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "secrets-agent-cdk-"));
  // An empty zip: just the end-of-central-directory record.
  const emptyZip = Buffer.concat([Buffer.from([0x50, 0x4b, 0x05, 0x06]), Buffer.alloc(18)]);
  fs.writeFileSync(path.join(dir, "secrets-agent-x86_64.zip"), emptyZip);
  fs.writeFileSync(path.join(dir, "secrets-agent-arm64.zip"), emptyZip);
  fs.mkdirSync(path.join(dir, "rust"));
  fs.writeFileSync(path.join(dir, "rust", "bootstrap"), "placeholder\n", { mode: 0o755 });
  return dir;
}

const DIR = placeholders();
const ZIPS = {
  x86_64: path.join(DIR, "secrets-agent-x86_64.zip"),
  arm64: path.join(DIR, "secrets-agent-arm64.zip"),
};

function fn(stack: Stack, id: string, architecture: lambda.Architecture, runtime = lambda.Runtime.PYTHON_3_15) {
  return new lambda.Function(stack, id, {
    runtime,
    architecture,
    handler: "app.handler",
    code: lambda.Code.fromAsset(path.join(DIR, "rust")),
  });
}

/** A stack with the layer and one x86_64 function given `options`. */
function withFunction(options: SecretsAgentFunctionOptions, setup?: (stack: Stack) => SecretsAgentFunctionOptions) {
  const stack = new Stack(new App(), "Test");
  const layer = new SecretsAgentLayer(stack, "Agent", { zips: ZIPS });
  const f = fn(stack, "Fn", lambda.Architecture.X86_64);
  layer.addTo(f, setup ? { ...options, ...setup(stack) } : options);
  return { stack, template: Template.fromStack(stack), f };
}

/** The statements of the function role's policy, resolved; [] when it has none. */
function statements(template: Template): unknown[] {
  const policies = Object.values(template.findResources("AWS::IAM::Policy"));
  if (policies.length === 0) {
    return [];
  }
  assert.equal(policies.length, 1);
  return policies[0].Properties.PolicyDocument.Statement;
}

function ref(stack: Stack, construct: { node: { defaultChild?: unknown } }): { Ref: string } {
  return { Ref: stack.getLogicalId(construct.node.defaultChild as never) };
}

describe("SecretsAgentLayer", () => {
  it("publishes one LayerVersion per architecture with compatibleArchitectures", () => {
    const stack = new Stack(new App(), "Test");
    new SecretsAgentLayer(stack, "Agent", { zips: ZIPS });
    const t = Template.fromStack(stack);
    t.resourceCountIs("AWS::Lambda::LayerVersion", 2);
    t.hasResourceProperties("AWS::Lambda::LayerVersion", {
      LayerName: "secrets-agent-x86_64",
      CompatibleArchitectures: ["x86_64"],
      LicenseInfo: "Apache-2.0",
    });
    t.hasResourceProperties("AWS::Lambda::LayerVersion", {
      LayerName: "secrets-agent-arm64",
      CompatibleArchitectures: ["arm64"],
    });
    t.hasResource("AWS::Lambda::LayerVersion", { DeletionPolicy: "Delete" });
  });

  it("publishes only the architectures it is given zips for", () => {
    const stack = new Stack(new App(), "Test");
    const layer = new SecretsAgentLayer(stack, "Agent", { zips: { x86_64: ZIPS.x86_64 } });
    Template.fromStack(stack).resourceCountIs("AWS::Lambda::LayerVersion", 1);
    assert.throws(
      () => layer.addTo(fn(stack, "Arm", lambda.Architecture.ARM_64)),
      /no arm64 layer: SecretsAgentLayer was given no arm64 zip \(`zips.arm64`\)/,
    );
  });

  it("names a missing zip and the command that builds it", () => {
    const stack = new Stack(new App(), "Test");
    const missing = path.join(DIR, "nope", "secrets-agent-arm64.zip");
    assert.throws(
      () => new SecretsAgentLayer(stack, "Agent", { zips: { x86_64: ZIPS.x86_64, arm64: missing } }),
      (e: Error) => e.message.includes(missing) && e.message.includes("`make layer-arm64`"),
    );
    assert.throws(() => new SecretsAgentLayer(stack, "Other", { zips: {} }), /names no zip/);
  });

  it("attaches the layer of each function's architecture", () => {
    const stack = new Stack(new App(), "Test");
    const layer = new SecretsAgentLayer(stack, "Agent", { zips: ZIPS });
    const x86 = fn(stack, "X86", lambda.Architecture.X86_64);
    const arm = fn(stack, "Arm", lambda.Architecture.ARM_64);
    layer.addTo(x86);
    layer.addTo(arm);
    const t = Template.fromStack(stack);
    const layerRef = (arch: string) => ({ Ref: stack.getLogicalId(layer.layers.get(arch)!.node.defaultChild as never) });
    t.hasResourceProperties("AWS::Lambda::Function", { Architectures: ["x86_64"], Layers: [layerRef("x86_64")] });
    t.hasResourceProperties("AWS::Lambda::Function", { Architectures: ["arm64"], Layers: [layerRef("arm64")] });
  });
});

describe("addTo: environment", () => {
  it("sets the agent's variables from the typed settings", () => {
    const { stack, template } = withFunction({ ttl: Duration.minutes(10), cacheSize: 50, logLevel: LogLevel.DEBUG, execWrapper: true }, (s) => ({
      prefetchSecrets: [secretsmanager.Secret.fromSecretNameV2(s, "Db", "prod/db")],
      prefetchParameters: [ssm.StringParameter.fromStringParameterName(s, "Flag", "/app/flag")],
    }));
    const env = stack.resolve(template.findResources("AWS::Lambda::Function"));
    const vars = (Object.values(env)[0] as { Properties: { Environment: { Variables: unknown } } }).Properties.Environment.Variables;
    assert.deepEqual(vars, {
      SECRETS_MANAGER_TTL: "600",
      SSM_PARAMETER_STORE_TTL: "600",
      PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE: "50",
      PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL: "debug",
      SECRETS_AGENT_PREFETCH: "prod/db",
      SECRETS_AGENT_PREFETCH_PARAMETERS: "/app/flag",
      AWS_LAMBDA_EXEC_WRAPPER: "/opt/secrets-agent-exec",
    });
  });

  it("sets nothing and grants nothing without settings", () => {
    const { template } = withFunction({});
    template.hasResourceProperties("AWS::Lambda::Function", { Environment: Match.absent() });
    template.resourceCountIs("AWS::IAM::Policy", 0);
  });

  it("refuses settings the agent would refuse, naming the value and the range", () => {
    assert.throws(() => withFunction({ ttl: Duration.days(2) }), /ttl = 172800 s: must be from 0 to 86400 seconds/);
    assert.throws(() => withFunction({ cacheSize: 1001 }), /cacheSize = 1001: must be a whole number from 0 to 1000/);
    assert.throws(() => withFunction({ cacheSize: 1.5 }), /cacheSize = 1.5/);
  });

  it("refuses the exec wrapper on an OS-only runtime, where Lambda would not run it", () => {
    const stack = new Stack(new App(), "Test");
    const layer = new SecretsAgentLayer(stack, "Agent", { zips: ZIPS });
    const rust = fn(stack, "Rust", lambda.Architecture.X86_64, lambda.Runtime.PROVIDED_AL2023);
    assert.throws(() => layer.addTo(rust, { execWrapper: true }), /AWS_LAMBDA_EXEC_WRAPPER only on managed runtimes/);
  });
});

describe("addTo: IAM is exactly what the settings need", () => {
  it("GetSecretValue and DescribeSecret on a secret read with caching on", () => {
    let secret!: secretsmanager.Secret;
    const { stack, template } = withFunction({}, (s) => ({ secrets: [(secret = new secretsmanager.Secret(s, "S"))] }));
    assert.deepEqual(statements(template), [
      { Action: ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], Effect: "Allow", Resource: ref(stack, secret) },
    ]);
  });

  it("GetSecretValue only when caching is off (TTL 0 or cache size 0): nothing asks DescribeSecret", () => {
    for (const off of [{ ttl: Duration.seconds(0) }, { cacheSize: 0 }]) {
      let secret!: secretsmanager.Secret;
      const { stack, template } = withFunction(off, (s) => ({ secrets: [(secret = new secretsmanager.Secret(s, "S"))] }));
      assert.deepEqual(statements(template), [
        { Action: "secretsmanager:GetSecretValue", Effect: "Allow", Resource: ref(stack, secret) },
      ]);
    }
  });

  it("BatchGetSecretValue on * only when secrets are prefetched", () => {
    let secret!: secretsmanager.Secret;
    const { stack, template } = withFunction({}, (s) => ({ prefetchSecrets: [(secret = new secretsmanager.Secret(s, "S"))] }));
    assert.deepEqual(statements(template), [
      { Action: ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], Effect: "Allow", Resource: ref(stack, secret) },
      { Action: "secretsmanager:BatchGetSecretValue", Effect: "Allow", Resource: "*" },
    ]);
  });

  it("a secret imported by name: its ARN with Secrets Manager's six-character suffix", () => {
    const { template } = withFunction({ ttl: Duration.seconds(0) }, (s) => ({
      secrets: [secretsmanager.Secret.fromSecretNameV2(s, "Db", "prod/db")],
    }));
    const [statement] = statements(template) as { Resource: { "Fn::Join": [string, unknown[]] } }[];
    const parts = statement.Resource["Fn::Join"][1];
    assert.equal(parts[parts.length - 1], ":secret:prod/db-??????");
  });

  it("ssm:GetParameter on parameters, kms:Decrypt on the keys given and on a secret's own key", () => {
    let param!: ssm.StringParameter;
    let paramKey!: kms.Key;
    let secretKey!: kms.Key;
    let secret!: secretsmanager.Secret;
    const { stack, template } = withFunction({ ttl: Duration.seconds(0) }, (s) => {
      paramKey = new kms.Key(s, "ParamKey");
      secretKey = new kms.Key(s, "SecretKey");
      secret = new secretsmanager.Secret(s, "S", { encryptionKey: secretKey });
      param = new ssm.StringParameter(s, "P", { stringValue: "v" });
      return { secrets: [secret], prefetchParameters: [param], encryptionKeys: [paramKey] };
    });
    const arnOf = (key: kms.Key) => ({ "Fn::GetAtt": [stack.getLogicalId(key.node.defaultChild as never), "Arn"] });
    const got = statements(template) as { Action: unknown; Resource: unknown }[];
    assert.deepEqual(
      got.map((s) => s.Action),
      ["secretsmanager:GetSecretValue", "ssm:GetParameter", "kms:Decrypt"],
    );
    assert.deepEqual(got[0].Resource, ref(stack, secret));
    assert.deepEqual(got[1].Resource, stack.resolve(param.parameterArn));
    assert.deepEqual(got[2].Resource, [arnOf(paramKey), arnOf(secretKey)]);
  });
});

describe("addSecretsAgentSidecar", () => {
  const reference = JSON.parse(fs.readFileSync(path.join(REPO, "ecs", "task-definition.json"), "utf8"));
  const refAgent = reference.containerDefinitions.find((c: { name: string }) => c.name === "secrets-agent");
  const refApp = reference.containerDefinitions.find((c: { name: string }) => c.name === "app");

  function sidecarStack() {
    const stack = new Stack(new App(), "Ecs");
    const task = new ecs.FargateTaskDefinition(stack, "Task", { cpu: 256, memoryLimitMiB: 512 });
    const app = task.addContainer("app", { containerName: "app", image: ecs.ContainerImage.fromRegistry("myapp:latest"), essential: true });
    let secret!: secretsmanager.ISecret;
    addSecretsAgentSidecar(task, {
      image: ecs.ContainerImage.fromRegistry("secrets-agent:0.1.0"),
      applications: [app],
      prefetchSecrets: [(secret = secretsmanager.Secret.fromSecretNameV2(stack, "Db", "myapp/db-credentials"))],
      logLevel: LogLevel.INFO,
    });
    return { stack, template: Template.fromStack(stack), secret };
  }

  it("adds the agent as ecs/task-definition.json does", () => {
    const { stack, template } = sidecarStack();
    const [task] = Object.values(template.findResources("AWS::ECS::TaskDefinition")).map((r) => stack.resolve(r.Properties));
    assert.deepEqual(task.Volumes, reference.volumes.map((v: { name: string }) => ({ Name: v.name })));
    const agent = task.ContainerDefinitions.find((c: { Name: string }) => c.Name === "secrets-agent");
    assert.equal(agent.Essential, refAgent.essential);
    assert.equal(agent.User, refAgent.user);
    assert.equal(agent.ReadonlyRootFilesystem, refAgent.readonlyRootFilesystem);
    assert.equal(agent.MemoryReservation, refAgent.memoryReservation);
    assert.equal(agent.Memory, refAgent.memory);
    assert.equal(agent.StopTimeout, refAgent.stopTimeout);
    assert.deepEqual(agent.LinuxParameters.Capabilities, { Drop: refAgent.linuxParameters.capabilities.drop });
    assert.deepEqual(agent.HealthCheck, {
      Command: refAgent.healthCheck.command,
      Interval: refAgent.healthCheck.interval,
      Timeout: refAgent.healthCheck.timeout,
      Retries: refAgent.healthCheck.retries,
      StartPeriod: refAgent.healthCheck.startPeriod,
    });
    assert.deepEqual(
      agent.MountPoints,
      refAgent.mountPoints.map((m: { sourceVolume: string; containerPath: string; readOnly: boolean }) => ({
        SourceVolume: m.sourceVolume, ContainerPath: m.containerPath, ReadOnly: m.readOnly,
      })),
    );
    const env = Object.fromEntries(agent.Environment.map((e: { Name: string; Value: string }) => [e.Name, e.Value]));
    assert.deepEqual(env, {
      SECRETS_AGENT_TOKEN_FILE: "/run/secrets-agent/token",
      SECRETS_AGENT_PREFETCH: "myapp/db-credentials",
      PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL: "info",
    });
  });

  it("starts the application once the agent is HEALTHY, with the token read-only and the URL", () => {
    const { stack, template } = sidecarStack();
    const [task] = Object.values(template.findResources("AWS::ECS::TaskDefinition")).map((r) => stack.resolve(r.Properties));
    const app = task.ContainerDefinitions.find((c: { Name: string }) => c.Name === "app");
    assert.deepEqual(app.DependsOn, refApp.dependsOn.map((d: { containerName: string; condition: string }) => ({ ContainerName: d.containerName, Condition: d.condition })));
    assert.deepEqual(app.MountPoints, [{ SourceVolume: "secrets-agent-token", ContainerPath: "/run/secrets-agent", ReadOnly: true }]);
    const env = Object.fromEntries(app.Environment.map((e: { Name: string; Value: string }) => [e.Name, e.Value]));
    assert.deepEqual(env, Object.fromEntries(refApp.environment.map((e: { name: string; value: string }) => [e.name, e.value])));
  });

  it("grants the task role exactly the reads", () => {
    const { template } = sidecarStack();
    const got = statements(template) as { Action: unknown }[];
    assert.deepEqual(got.map((s) => s.Action), [
      ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
      "secretsmanager:BatchGetSecretValue",
    ]);
  });
});

describe("the example app", () => {
  function example(nag: boolean, acknowledge = true) {
    const app = new App({ outdir: fs.mkdtempSync(path.join(os.tmpdir(), "secrets-agent-cdk-out-")) });
    const stack = new ExampleStack(app, "SecretsAgentExample", { layerDir: DIR, rustFunctionDir: path.join(DIR, "rust") });
    if (!acknowledge) {
      // An unexplained finding: a second secret without the demo secret's acknowledgement.
      new secretsmanager.Secret(stack, "Unexplained");
    }
    if (nag) {
      Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    }
    return { app, stack };
  }

  it("has one function of each architecture, each with its layer and its settings", () => {
    const { stack } = example(false);
    const t = Template.fromStack(stack);
    t.resourceCountIs("AWS::Lambda::LayerVersion", 2);
    t.resourceCountIs("AWS::Lambda::Function", 2);
    t.hasResourceProperties("AWS::Lambda::Function", {
      Architectures: ["x86_64"],
      Runtime: "provided.al2023",
      Handler: "bootstrap",
      Layers: [{ Ref: Match.stringLikeRegexp("^SecretsAgentLayerx8664") }],
      Environment: { Variables: Match.objectLike({ SECRETS_AGENT_PREFETCH: Match.anyValue(), SECRETS_MANAGER_TTL: "300" }) },
    });
    t.hasResourceProperties("AWS::Lambda::Function", {
      Architectures: ["arm64"],
      Layers: [{ Ref: Match.stringLikeRegexp("^SecretsAgentLayerarm64") }],
      Environment: { Variables: Match.objectLike({ AWS_LAMBDA_EXEC_WRAPPER: "/opt/secrets-agent-exec" }) },
    });
  });

  it("passes cdk-nag's AwsSolutions checks, every acknowledgement explained", () => {
    const { app } = example(true);
    assert.doesNotThrow(() => app.synth());
  });

  it("fails cdk-nag on an unexplained finding (the check is live)", () => {
    const { app } = example(true, false);
    assert.throws(() => app.synth(), /Validation failed/);
    // The only finding is the new secret's: the demo secret's acknowledgement covers only it.
    const report = JSON.parse(fs.readFileSync(path.join(app.outdir, "validation-report.json"), "utf8"));
    const findings = report.pluginReports.flatMap((p: { violations: { ruleName: string; violatingConstructs: { constructPath: string }[] }[] }) =>
      p.violations.flatMap((v) => v.violatingConstructs.map((c) => `${v.ruleName} ${c.constructPath}`)),
    );
    assert.deepEqual(findings, ["AwsSolutions-SMG4 SecretsAgentExample/Unexplained/Resource"]);
  });
});
