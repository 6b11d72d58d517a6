import * as fs from "node:fs";
import * as path from "node:path";
import { RemovalPolicy } from "aws-cdk-lib";
import * as lambda from "aws-cdk-lib/aws-lambda";
import { Construct } from "constructs";
import { agentEnvironment, grantAgentReads, SecretsAgentSettings } from "./settings";

/** Where `make layer` and `make layer-arm64` put the zips, relative to this package. */
const REPO_LAYER_DIR = path.join(__dirname, "..", "..", "..", "layer");

/** The layer's exec wrapper (docs/exec.md): resolves `awssm:` placeholders before the runtime starts. */
export const EXEC_WRAPPER = "/opt/secrets-agent-exec";

export interface SecretsAgentLayerProps {
  /**
   * The layer zip of each architecture to publish, as `make layer` (`x86_64`) and `make
   * layer-arm64` (`arm64`) build them. An architecture left out gets no layer, and a function
   * of that architecture cannot be given the agent.
   *
   * Default: both, `layer/secrets-agent-x86_64.zip` and `layer/secrets-agent-arm64.zip` of the
   * repository this package sits in (`make layer-all`).
   */
  readonly zips?: { readonly x86_64?: string; readonly arm64?: string };
  /** Prefix of the layer names (`<prefix>-x86_64`, `<prefix>-arm64`). Default: `secrets-agent`. */
  readonly layerVersionName?: string;
  /** What happens to old layer versions. Default: `RemovalPolicy.DESTROY`, as template.yaml's `RetentionPolicy: Delete`. */
  readonly removalPolicy?: RemovalPolicy;
}

/** Options of `SecretsAgentLayer.addTo`: the agent's settings, and the exec wrapper. */
export interface SecretsAgentFunctionOptions extends SecretsAgentSettings {
  /**
   * Start the runtime through the layer's exec wrapper (`AWS_LAMBDA_EXEC_WRAPPER=/opt/secrets-agent-exec`),
   * which resolves `awssm:`/`awsparam:` placeholders in the function's environment first. Lambda
   * runs wrapper scripts on managed runtimes only (Node.js, Python, Java, .NET, Ruby), so this is
   * refused for an OS-only runtime (`provided.*`). Default: false.
   */
  readonly execWrapper?: boolean;
}

/**
 * The secrets-agent extension published as one `LayerVersion` per architecture, each with its
 * `compatibleArchitectures` set. `addTo` gives a function the layer of its architecture, the
 * agent's settings and the IAM they need.
 */
export class SecretsAgentLayer extends Construct {
  /** The published layers, by architecture name (`x86_64`, `arm64`). */
  readonly layers: ReadonlyMap<string, lambda.LayerVersion>;

  constructor(scope: Construct, id: string, props: SecretsAgentLayerProps = {}) {
    super(scope, id);
    const zips = props.zips ?? {
      x86_64: path.join(REPO_LAYER_DIR, "secrets-agent-x86_64.zip"),
      arm64: path.join(REPO_LAYER_DIR, "secrets-agent-arm64.zip"),
    };
    const archs: [lambda.Architecture, string | undefined, string][] = [
      [lambda.Architecture.X86_64, zips.x86_64, "make layer"],
      [lambda.Architecture.ARM_64, zips.arm64, "make layer-arm64"],
    ];
    const layers = new Map<string, lambda.LayerVersion>();
    for (const [arch, zip, make] of archs) {
      if (zip === undefined) {
        continue;
      }
      if (!fs.existsSync(zip)) {
        throw new Error(
          `secrets-agent: the ${arch.name} layer zip ${zip} does not exist: build it with ` +
            `\`${make}\`, or leave ${arch.name} out of SecretsAgentLayer's \`zips\` to publish no layer for it`,
        );
      }
      const layer = new lambda.LayerVersion(this, `Layer-${arch.name}`, {
        layerVersionName: `${props.layerVersionName ?? "secrets-agent"}-${arch.name}`,
        description: `secrets-agent Lambda extension (${arch.name})`,
        code: lambda.Code.fromAsset(zip),
        compatibleArchitectures: [arch],
        license: "Apache-2.0",
        removalPolicy: props.removalPolicy ?? RemovalPolicy.DESTROY,
      });
      layers.set(arch.name, layer);
    }
    if (layers.size === 0) {
      throw new Error("secrets-agent: SecretsAgentLayer `zips` names no zip: give x86_64, arm64 or both");
    }
    this.layers = layers;
  }

  /** The layer for `architecture`; an error naming the missing zip when it was not published. */
  layerFor(architecture: lambda.Architecture): lambda.ILayerVersion {
    const layer = this.layers.get(architecture.name);
    if (layer === undefined) {
      throw new Error(
        `secrets-agent: no ${architecture.name} layer: SecretsAgentLayer was given no ${architecture.name} zip (\`zips.${architecture.name}\`)`,
      );
    }
    return layer;
  }

  /**
   * Gives `fn` the layer of its architecture, sets the agent's environment variables from
   * `options`, and grants its role exactly the reads they need (see `grantAgentReads`).
   */
  addTo(fn: lambda.Function, options: SecretsAgentFunctionOptions = {}): void {
    fn.addLayers(this.layerFor(fn.architecture));
    const env = agentEnvironment(options);
    if (options.execWrapper) {
      if (fn.runtime.family === lambda.RuntimeFamily.OTHER) {
        throw new Error(
          `secrets-agent: execWrapper on ${fn.node.path} (runtime ${fn.runtime.name}): Lambda runs ` +
            "AWS_LAMBDA_EXEC_WRAPPER only on managed runtimes (Node.js, Python, Java, .NET, Ruby); " +
            "read the secrets through localhost:2773 instead",
        );
      }
      env.AWS_LAMBDA_EXEC_WRAPPER = EXEC_WRAPPER;
    }
    for (const [name, value] of Object.entries(env)) {
      fn.addEnvironment(name, value);
    }
    grantAgentReads(fn, options);
  }
}
