import * as path from "node:path";
import { CfnOutput, Duration, Stack, StackProps, Validations } from "aws-cdk-lib";
import * as lambda from "aws-cdk-lib/aws-lambda";
import * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import { Construct } from "constructs";
import { SecretsAgentLayer } from "../lib";

/** The repository root, from dist/bin/. */
const REPO = path.join(__dirname, "..", "..", "..");

export interface ExampleStackProps extends StackProps {
  /** Folder holding the layer zips. Default: the repository's `layer/` (`make layer-all`). */
  readonly layerDir?: string;
  /**
   * Folder holding the Rust example's `bootstrap`. Default:
   * `target/example-rust/lambda/bootstrap` (`make example-rust`).
   */
  readonly rustFunctionDir?: string;
}

/**
 * The example of docs/cdk.md, the CDK twin of template.yaml: the layer for both architectures, a
 * demo secret, and one function of each architecture reading it through the extension:
 * - x86_64: the Rust example (examples/lambda-rust, lambda_runtime on `provided.al2023`), which
 *   reads the secret at init and on each invoke; the secret is prefetched;
 * - arm64: the Python example (examples/lambda-python), with the exec wrapper resolving
 *   `DB_PASSWORD=awssm:<secret>#password` before the runtime starts.
 */
export class ExampleStack extends Stack {
  constructor(scope: Construct, id: string, props: ExampleStackProps = {}) {
    super(scope, id, props);
    const layerDir = props.layerDir ?? path.join(REPO, "layer");
    const agent = new SecretsAgentLayer(this, "SecretsAgent", {
      zips: {
        x86_64: path.join(layerDir, "secrets-agent-x86_64.zip"),
        arm64: path.join(layerDir, "secrets-agent-arm64.zip"),
      },
    });

    const secret = new secretsmanager.Secret(this, "DemoSecret", {
      description: "Demo secret read by the secrets-agent example functions",
      generateSecretString: {
        secretStringTemplate: JSON.stringify({ username: "demo" }),
        generateStringKey: "password",
        passwordLength: 32,
        excludePunctuation: true,
      },
    });

    const rust = new lambda.Function(this, "RustFunction", {
      description: "Rust (lambda_runtime) example: reads DemoSecret through secrets-agent",
      runtime: lambda.Runtime.PROVIDED_AL2023,
      architecture: lambda.Architecture.X86_64,
      handler: "bootstrap",
      code: lambda.Code.fromAsset(
        props.rustFunctionDir ?? path.join(REPO, "target", "example-rust", "lambda", "bootstrap"),
      ),
      memorySize: 128,
      timeout: Duration.seconds(10),
      environment: { SECRET_ID: secret.secretArn },
    });
    agent.addTo(rust, { prefetchSecrets: [secret], ttl: Duration.minutes(5) });

    const python = new lambda.Function(this, "PythonFunction", {
      description: "Python example: reads DemoSecret through secrets-agent and its exec wrapper",
      runtime: lambda.Runtime.PYTHON_3_15,
      architecture: lambda.Architecture.ARM_64,
      handler: "app.handler",
      code: lambda.Code.fromAsset(path.join(REPO, "examples", "lambda-python")),
      memorySize: 256,
      timeout: Duration.seconds(10),
      environment: {
        SECRET_ID: secret.secretArn,
        DB_PASSWORD: `awssm:${secret.secretArn}#password`,
      },
    });
    agent.addTo(python, { secrets: [secret], ttl: Duration.minutes(5), execWrapper: true });

    new CfnOutput(this, "RustFunctionName", { value: rust.functionName });
    new CfnOutput(this, "PythonFunctionName", { value: python.functionName });
    new CfnOutput(this, "DemoSecretArn", { value: secret.secretArn });

    for (const fn of [rust, python]) {
      Validations.of(fn).acknowledge({
        id: "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        reason: "Lambda's own managed policy for writing the function's CloudWatch logs (logs:CreateLogGroup, CreateLogStream, PutLogEvents); the agent's reads are granted separately, resource by resource.",
      });
    }
    Validations.of(rust).acknowledge({
      id: "AwsSolutions-IAM5[Resource::*]",
      reason: "secretsmanager:BatchGetSecretValue, granted because the function prefetches secrets, supports no resource-level permission (AWS requires Resource '*'); each secret it returns is still authorized by GetSecretValue, granted on the named secret only.",
    });
    Validations.of(secret).acknowledge({
      id: "AwsSolutions-SMG4",
      reason: "A demo secret with a generated value; rotation is the application's choice. The agent serves a rotated value once its TTL has passed.",
    });
  }
}
