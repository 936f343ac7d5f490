#!/bin/bash
# visionq worker: EC2 launch template user-data (Amazon Linux 2023 or Debian/Ubuntu).
#
# Set these in the launch template before use (or export them from an earlier script):
#   REDIS_URL        broker, e.g. redis://10.0.1.10:6379/0 (keep it on a private subnet)
#   VISIONQ_QUEUES   queues this group serves, e.g. "face" (comma-separated)
#   VISIONQ_EXTRAS   pip extras for those models, e.g. "face"
#   VISIONQ_VERSION  pip requirement for visionq, e.g. "visionq==0.1.0"
#   CONCURRENCY      tasks per instance (match the autoscaler's --concurrency)
#   LIFECYCLE_HOOK   name of the termination hook (autoscaler --lifecycle-hook creates it)
#   ASG_NAME         the group's name (default: read from instance metadata tags)
#
# The instance profile needs only autoscaling:CompleteLifecycleAction on its own group
# (autoscale/iam-policy.json is the autoscaler's policy, a superset of that).
#
# What it does: installs visionq in /opt/visionq, runs `celery -A tasks worker -Q <queues>`
# as a systemd unit, and runs a drain watcher: when the Auto Scaling group moves this
# instance to Terminating:Wait, it stops the worker with SIGTERM (Celery warm shutdown:
# stop consuming, finish in-flight tasks), waits for it to exit, then completes the
# lifecycle action so the instance terminates with nothing lost.
set -euo pipefail

REDIS_URL="${REDIS_URL:-redis://CHANGE-ME:6379/0}"
VISIONQ_QUEUES="${VISIONQ_QUEUES:-face}"
VISIONQ_EXTRAS="${VISIONQ_EXTRAS:-face}"
VISIONQ_VERSION="${VISIONQ_VERSION:-visionq}"
CONCURRENCY="${CONCURRENCY:-1}"
LIFECYCLE_HOOK="${LIFECYCLE_HOOK:-visionq-drain}"
# Longest task plus margin; must not exceed the hook's HeartbeatTimeout unless the
# autoscaler is running (it sends heartbeats for busy instances).
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-840}"

if command -v dnf >/dev/null; then
  dnf install -y python3.11 python3.11-pip
  PY=python3.11
else
  apt-get update -y && apt-get install -y python3 python3-venv
  PY=python3
fi

id visionq >/dev/null 2>&1 || useradd --system --home /opt/visionq --shell /sbin/nologin visionq
$PY -m venv /opt/visionq/venv
/opt/visionq/venv/bin/pip install --upgrade pip
/opt/visionq/venv/bin/pip install "${VISIONQ_VERSION}[${VISIONQ_EXTRAS}]"

# IMDSv2 token, then this instance's id and region.
TOKEN=$(curl -sS -X PUT http://169.254.169.254/latest/api/token \
  -H "X-aws-ec2-metadata-token-ttl-seconds: 21600")
imds() { curl -sS -H "X-aws-ec2-metadata-token: ${TOKEN}" "http://169.254.169.254/latest/$1"; }
INSTANCE_ID=$(imds meta-data/instance-id)
REGION=$(imds meta-data/placement/region)
# Needs "InstanceMetadataTags": "enabled" in the launch template, or set ASG_NAME yourself.
ASG_NAME="${ASG_NAME:-$(imds meta-data/tags/instance/aws:autoscaling:groupName || true)}"

install -d -o visionq /etc/visionq
cat > /etc/visionq/worker.env <<ENV
REDIS_URL=${REDIS_URL}
VISIONQ_REDIS_URL=${REDIS_URL}
VISIONQ_INSTANCE_ID=${INSTANCE_ID}
AWS_DEFAULT_REGION=${REGION}
ENV

# The worker. KillSignal=SIGTERM is Celery's warm shutdown; TimeoutStopSec lets the
# in-flight task finish; SIGKILL only if it is still running after that.
cat > /etc/systemd/system/visionq-worker.service <<UNIT
[Unit]
Description=visionq Celery worker (${VISIONQ_QUEUES})
After=network-online.target
Wants=network-online.target

[Service]
User=visionq
WorkingDirectory=/opt/visionq
EnvironmentFile=/etc/visionq/worker.env
ExecStart=/opt/visionq/venv/bin/celery -A tasks worker -Q ${VISIONQ_QUEUES} -c ${CONCURRENCY} -n ${INSTANCE_ID}@%%h --without-mingle --without-gossip
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=${DRAIN_TIMEOUT}
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT

# The drain watcher: polls the instance's target lifecycle state every 5 s.
cat > /opt/visionq/drain.sh <<'DRAIN'
#!/bin/bash
set -uo pipefail
source /etc/visionq/drain.env
token() { curl -sS -X PUT http://169.254.169.254/latest/api/token \
  -H "X-aws-ec2-metadata-token-ttl-seconds: 300"; }
while true; do
  STATE=$(curl -sS -H "X-aws-ec2-metadata-token: $(token)" \
    http://169.254.169.254/latest/meta-data/autoscaling/target-lifecycle-state || true)
  if [ "$STATE" = "Terminated" ]; then
    logger -t visionq-drain "lifecycle: Terminated requested, warm-stopping the worker"
    # systemctl stop sends SIGTERM and waits up to TimeoutStopSec for in-flight tasks.
    systemctl stop visionq-worker.service
    logger -t visionq-drain "worker stopped, completing lifecycle action"
    /opt/visionq/venv/bin/python - <<PY
import boto3
boto3.client("autoscaling", region_name="${REGION}").complete_lifecycle_action(
    LifecycleHookName="${LIFECYCLE_HOOK}", AutoScalingGroupName="${ASG_NAME}",
    InstanceId="${INSTANCE_ID}", LifecycleActionResult="CONTINUE")
PY
    exit 0
  fi
  sleep 5
done
DRAIN
chmod 0755 /opt/visionq/drain.sh
cat > /etc/visionq/drain.env <<ENV
REGION=${REGION}
INSTANCE_ID=${INSTANCE_ID}
ASG_NAME=${ASG_NAME}
LIFECYCLE_HOOK=${LIFECYCLE_HOOK}
ENV

cat > /etc/systemd/system/visionq-drain.service <<'UNIT'
[Unit]
Description=visionq drain on Auto Scaling termination
After=visionq-worker.service

[Service]
ExecStart=/opt/visionq/drain.sh
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT

systemctl daemon-reload
systemctl enable --now visionq-worker.service visionq-drain.service
