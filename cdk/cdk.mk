# The CDK constructs (cdk/): `make cdk-test` installs the Node packages from the committed
# lockfile (`npm ci`), compiles, runs the tests (node's own test runner, aws-cdk-lib/assertions,
# cdk-nag), synthesizes the example app with the `cdk` CLI, and runs cfn-lint on its template.
# Included by the root Makefile.
#
# Offline: the stacks are environment-agnostic (no account or region lookups), the CLI's version
# check, notices and telemetry are off. The synth uses placeholder layer zips and a placeholder
# Rust `bootstrap` made in cdk/build/, so it needs neither `make layer-all` (two release builds)
# nor `make example-rust`; a deploy uses the real ones (docs/cdk.md).

CDK_DIR := cdk
CDK_PLACEHOLDERS := $(CDK_DIR)/build/placeholders
# No `cdk` version check, no notices fetched, no telemetry.
CDK_ENV := CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true
# W3005: CDK gives each function a DependsOn on its role next to the GetAtt of the role's ARN;
# redundant, and harmless.
CFN_LINT_IGNORE := W3005

.PHONY: cdk-test cdk-node cdk-deps

# Debian's `nodejs` and `npm` when Node is missing; aws-cdk-lib needs Node 20 or newer.
cdk-node:
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  echo "installing: nodejs npm"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq nodejs npm; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq nodejs npm; fi; \
	fi
	@major=$$(node -p 'process.versions.node.split(".")[0]'); \
	if [ "$$major" -lt 20 ]; then \
	  echo "error: Node.js $$(node --version) is too old: aws-cdk-lib needs Node 20 or newer (e.g. from https://deb.nodesource.com)" >&2; \
	  exit 1; \
	fi

$(CDK_DIR)/node_modules/.package-lock.json: $(CDK_DIR)/package-lock.json | cdk-node
	cd $(CDK_DIR) && npm ci --no-audit --no-fund --loglevel=error

cdk-deps: $(CDK_DIR)/node_modules/.package-lock.json

cdk-test: venv cdk-deps
	cd $(CDK_DIR) && npx tsc
	cd $(CDK_DIR) && node --test dist/test/
	rm -rf $(CDK_PLACEHOLDERS) && mkdir -p $(CDK_PLACEHOLDERS)/rust
	echo placeholder > $(CDK_PLACEHOLDERS)/rust/bootstrap
	cd $(CDK_PLACEHOLDERS) && TZ=UTC zip -q -X secrets-agent-x86_64.zip rust/bootstrap && \
	  cp secrets-agent-x86_64.zip secrets-agent-arm64.zip
	cd $(CDK_DIR) && $(CDK_ENV) npx cdk synth --quiet --no-notices \
	  -c layerDir=$(CURDIR)/$(CDK_PLACEHOLDERS) -c rustFunctionDir=$(CURDIR)/$(CDK_PLACEHOLDERS)/rust
	$(VENV)/bin/cfn-lint --ignore-checks $(CFN_LINT_IGNORE) -- $(CDK_DIR)/cdk.out/SecretsAgentExample.template.json
