#!/usr/bin/env bash
# Deploys an overlay so that the schema migration finishes before any pod of
# the new release starts (for clusters without Argo CD, which orders the same
# steps through the sync-wave and hook annotations):
#   1. delete the previous release's Jobs (a Job's pod template is immutable);
#   2. apply the setup stage (objects labelled crmsync.io/stage=setup: the
#      Namespace, ConfigMap, ServiceAccounts, NetworkPolicies and the
#      crmsync-migrate and crmsync-topics Jobs);
#   3. wait for those Jobs to complete: a failed migration stops here, and the
#      running release is left untouched;
#   4. apply everything else and wait for the Deployments to roll.
# With --rollback (going back to the previous release) the Jobs are neither
# run nor applied: the schema is already one release ahead, which the
# previous release works with (expand/contract), and its crmsync-migrate
# would not know the newer revision.
#
# Usage: deploy/k8s/apply.sh [--rollback] OVERLAY_DIR [NAMESPACE]   (NAMESPACE: crmsync)
# Environment: KUBECTL (default kubectl), CRMSYNC_DEPLOY_TIMEOUT (default 900s).
set -euo pipefail

rollback=false
if [ "${1:-}" = --rollback ]; then rollback=true; shift; fi
overlay="${1:?usage: apply.sh [--rollback] OVERLAY_DIR [NAMESPACE]}"
namespace="${2:-crmsync}"
kubectl="${KUBECTL:-kubectl}"
timeout="${CRMSYNC_DEPLOY_TIMEOUT:-900s}"
setup="crmsync.io/stage=setup"

rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
"$kubectl" kustomize "$overlay" >"$rendered"

if "$rollback"; then
  echo "[deploy] rollback: no migrations, rollout only"
  "$kubectl" apply --filename "$rendered" --selector 'app.kubernetes.io/component notin (migrations,topics)'
  "$kubectl" rollout status deployment --namespace "$namespace" \
    --selector app.kubernetes.io/name=crmsync --timeout "$timeout"
  echo "[deploy] done"
  exit 0
fi

echo "[deploy] setup stage: migrations and topics"
"$kubectl" delete job --namespace "$namespace" --selector "$setup" --ignore-not-found --wait=true
"$kubectl" apply --filename "$rendered" --selector "$setup"
if ! "$kubectl" wait job --namespace "$namespace" --selector "$setup" \
     --for=condition=complete --timeout "$timeout"; then
  echo "[deploy] ERROR: a setup Job did not complete; the running release is untouched." >&2
  echo "[deploy] Read: $kubectl logs --namespace $namespace --selector app.kubernetes.io/component=migrations" >&2
  exit 1
fi

echo "[deploy] rollout"
"$kubectl" apply --filename "$rendered"
"$kubectl" rollout status deployment --namespace "$namespace" \
  --selector app.kubernetes.io/name=crmsync --timeout "$timeout"
echo "[deploy] done"
