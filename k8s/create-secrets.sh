#!/usr/bin/env bash
# Creates the Secrets the manifests refer to, with random passwords, in namespace
# drama-streaming. Run it once before `kubectl apply -k k8s/overlays/<name>`; a Secret that
# exists is kept (PostgreSQL and the RabbitMQ users keep the passwords they started with). To
# rotate, delete the Secrets, the PostgreSQL volume and the RabbitMQ User objects, then rerun.
#
#   k8s/create-secrets.sh           # eks
#   k8s/create-secrets.sh --local   # kind/minikube: MinIO's credentials too
#
# Values go to kubectl on stdin, never on a command line. Passwords are hex: safe in a URL.
set -euo pipefail

ns=drama-streaming
rabbitmq=rabbitmq.$ns.svc
postgres=postgres.$ns.svc

password() { openssl rand -hex 24; }

# secret NAME < KEY=VALUE lines: create NAME unless it exists.
secret() {
  if kubectl -n "$ns" get secret "$1" >/dev/null 2>&1; then
    echo "secret/$1 exists, kept"
    cat >/dev/null
  else
    kubectl -n "$ns" create secret generic "$1" --from-env-file=/dev/stdin
  fi
}

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"

# One RabbitMQ user per service (k8s/base/rabbitmq/users.yaml imports username and password);
# the service reads AMQP_URL.
for service in drama-service episode-service stream-service; do
  pw=$(password)
  secret "$service-amqp" <<END
username=$service
password=$pw
AMQP_URL=amqp://$service:$pw@$rabbitmq:5672/
END
done

# KEDA reads queue depth from the management API (k8s/base/rabbitmq/keda.yaml).
pw=$(password)
secret keda-rabbitmq <<END
username=keda
password=$pw
host=http://keda:$pw@$rabbitmq:15672/
END

# PostgreSQL: the superuser, and one owner per database (deploy/postgres/init-databases.sh).
drama=$(password)
episode=$(password)
secret postgres-credentials <<END
POSTGRES_PASSWORD=$(password)
DRAMA_DB_PASSWORD=$drama
EPISODE_DB_PASSWORD=$episode
END
secret drama-service-db <<END
DATABASE_URL=postgresql+asyncpg://drama:$drama@$postgres:5432/drama
END
secret episode-service-db <<END
DATABASE_URL=postgresql+asyncpg://episode:$episode@$postgres:5432/episode
END

if [[ ${1:-} == --local ]]; then
  secret minio-credentials <<END
MINIO_ROOT_USER=drama-media
MINIO_ROOT_PASSWORD=$(password)
END
fi
