import { Duration } from "aws-cdk-lib";
import * as ecs from "aws-cdk-lib/aws-ecs";
import { agentEnvironment, grantAgentReads, SecretsAgentSettings } from "./settings";

/** The shared volume the agent writes its token to and the application reads it from. */
export const TOKEN_VOLUME = "secrets-agent-token";
const TOKEN_DIR = "/run/secrets-agent";
export const TOKEN_FILE = `${TOKEN_DIR}/token`;

export interface SecretsAgentSidecarProps extends SecretsAgentSettings {
  /** The agent's image (`make image`, pushed to your registry). */
  readonly image: ecs.ContainerImage;
  /**
   * The application containers: each starts only once the agent is `HEALTHY`, gets the token
   * volume read-only at /run/secrets-agent, and `SECRETS_AGENT_URL` and `SECRETS_AGENT_TOKEN_FILE`.
   */
  readonly applications: ecs.ContainerDefinition[];
  /** The agent's log driver. Default: none (as ECS's default). */
  readonly logging?: ecs.LogDriver;
  /** Port the agent serves on 127.0.0.1. Default: 2773. */
  readonly port?: number;
}

/**
 * Adds the agent to `taskDefinition` as `ecs/task-definition.json` does: a container named
 * `secrets-agent` (non-root, read-only root filesystem, all capabilities dropped, 32/64 MiB) with
 * the `secrets-agent health` check, the token on a task volume, and the applications depending on
 * it being HEALTHY. The task role gets exactly the reads the settings need (`grantAgentReads`).
 */
export function addSecretsAgentSidecar(
  taskDefinition: ecs.TaskDefinition,
  props: SecretsAgentSidecarProps,
): ecs.ContainerDefinition {
  if (props.applications.length === 0) {
    throw new Error("secrets-agent: addSecretsAgentSidecar needs at least one application container");
  }
  const port = props.port ?? 2773;
  if (!(Number.isInteger(port) && port >= 1 && port <= 65535)) {
    throw new Error(`secrets-agent: port = ${port}: must be a whole number from 1 to 65535`);
  }
  taskDefinition.addVolume({ name: TOKEN_VOLUME });
  const environment: Record<string, string> = {
    SECRETS_AGENT_TOKEN_FILE: TOKEN_FILE,
    ...agentEnvironment(props),
  };
  if (props.port !== undefined) {
    environment.PARAMETERS_SECRETS_EXTENSION_HTTP_PORT = String(port);
  }
  const linuxParameters = new ecs.LinuxParameters(taskDefinition, "SecretsAgentLinuxParameters");
  linuxParameters.dropCapabilities(ecs.Capability.ALL);
  const agent = taskDefinition.addContainer("secrets-agent", {
    containerName: "secrets-agent",
    image: props.image,
    essential: true,
    user: "65532:65532",
    readonlyRootFilesystem: true,
    memoryReservationMiB: 32,
    memoryLimitMiB: 64,
    stopTimeout: Duration.seconds(10),
    linuxParameters,
    environment,
    healthCheck: {
      command: ["CMD", "/usr/local/bin/secrets-agent", "health"],
      interval: Duration.seconds(5),
      timeout: Duration.seconds(2),
      retries: 3,
      startPeriod: Duration.seconds(10),
    },
    logging: props.logging,
  });
  agent.addMountPoints({ sourceVolume: TOKEN_VOLUME, containerPath: TOKEN_DIR, readOnly: false });
  for (const app of props.applications) {
    app.addContainerDependencies({ container: agent, condition: ecs.ContainerDependencyCondition.HEALTHY });
    app.addMountPoints({ sourceVolume: TOKEN_VOLUME, containerPath: TOKEN_DIR, readOnly: true });
    app.addEnvironment("SECRETS_AGENT_URL", `http://127.0.0.1:${port}`);
    app.addEnvironment("SECRETS_AGENT_TOKEN_FILE", TOKEN_FILE);
  }
  grantAgentReads(taskDefinition.taskRole, props);
  return agent;
}
