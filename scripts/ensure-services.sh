#!/usr/bin/env bash
# Start the local servers the integration tiers need, if they are installed and not running.
# Usage: scripts/ensure-services.sh [postgres] [redis] [rabbitmq]   (default: postgres)
set -uo pipefail
wanted=("${@:-postgres}")

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # port, name: poll the port for up to 60 s
  for _ in $(seq 1 120); do up "$1" && { echo "ensure-services: $2 is up on :$1"; return 0; }; sleep 0.5; done
  echo "ensure-services: $2 did not come up on :$1" >&2; return 1
}

status=0
for service in "${wanted[@]}"; do
  case "$service" in
    postgres)
      up 5432 || { command -v pg_ctlcluster >/dev/null && pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start; }
      wait_for 5432 PostgreSQL || status=1 ;;
    redis)
      up 6379 || { command -v redis-server >/dev/null && redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log; }
      wait_for 6379 Redis || status=1 ;;
    rabbitmq)
      up 5672 || { command -v rabbitmq-server >/dev/null && rabbitmq-server -detached; }
      wait_for 5672 RabbitMQ || status=1
      # partitioned followers (CLINIC_PARTITIONS > 1) route through consistent-hash exchanges
      command -v rabbitmq-plugins >/dev/null && rabbitmq-plugins enable --quiet rabbitmq_consistent_hash_exchange >/dev/null ;;
    *) echo "ensure-services: unknown service $service" >&2; status=1 ;;
  esac
done
exit $status
