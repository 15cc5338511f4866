#!/usr/bin/env bash
# Creates the Secrets the manifests refer to, with random passwords, in namespace
# drama-streaming. Run it once before `kubectl apply -k k8s/overlays/<name>`; a Secret that
# exists is kept (PostgreSQL and the RabbitMQ users keep the passwords they started with), and
# a rerun after a partial one completes the set consistently: the database URLs take their
# passwords from postgres-credentials when it exists, and the script stops, changing nothing
# more, when a kept URL does not match it. To rotate, delete the Secrets, the PostgreSQL volume
# and the RabbitMQ User objects, then rerun.
#
#   k8s/create-secrets.sh           # eks
#   k8s/create-secrets.sh --local   # kind/minikube: MinIO's root user and its two users too
#
# Values go to kubectl on stdin, never on a command line. Passwords are hex: safe in a URL.
set -euo pipefail

ns=drama-streaming
rabbitmq=rabbitmq.$ns.svc
postgres=postgres.$ns.svc

password() { openssl rand -hex 24; }

exists() { kubectl -n "$ns" get secret "$1" >/dev/null 2>&1; }

# value NAME KEY: one value of an existing Secret, decoded.
value() { kubectl -n "$ns" get secret "$1" -o "jsonpath={.data.$2}" | base64 -d; }

# secret NAME < KEY=VALUE lines: create NAME unless it exists.
secret() {
  if exists "$1"; then
    echo "secret/$1 exists, kept" >&2
    cat >/dev/null
  else
    kubectl -n "$ns" create secret generic "$1" --from-env-file=/dev/stdin
  fi
}

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"

# One RabbitMQ user per service (k8s/base/rabbitmq/users.yaml imports username and password);
# the service reads AMQP_URL (TLS: the broker listens for the services on 5671 only).
for service in drama-service episode-service stream-service; do
  pw=$(password)
  secret "$service-amqp" <<END
username=$service
password=$pw
AMQP_URL=amqps://$service:$pw@$rabbitmq:5671/
END
done

# KEDA reads queue depth from the management API (k8s/base/rabbitmq/keda.yaml).
pw=$(password)
secret keda-rabbitmq <<END
username=keda
password=$pw
host=http://keda:$pw@$rabbitmq:15672/
END

# PostgreSQL (local: the in-cluster StatefulSet): the superuser, and one owner per database
# (deploy/postgres/init-databases.sh). On EKS the database is RDS and the services' DATABASE_URLs
# come from Secrets Manager through the Secrets Store CSI driver (k8s/overlays/eks/database.yaml).
if [[ ${1:-} == --local ]]; then
  # postgres-credentials owns the owners' passwords (PostgreSQL sets them from it): a kept one is
  # read back, so that the DATABASE_URLs created now carry the same.
  if exists postgres-credentials; then
    drama=$(value postgres-credentials DRAMA_DB_PASSWORD)
    episode=$(value postgres-credentials EPISODE_DB_PASSWORD)
  else
    drama=$(password)
    episode=$(password)
  fi
  url() { echo "postgresql+asyncpg://$1:$2@$postgres:5432/$1"; }
  for pair in "drama $drama" "episode $episode"; do
    read -r db pw <<<"$pair"
    if exists "$db-service-db" && [[ $(value "$db-service-db" DATABASE_URL) != "$(url "$db" "$pw")" ]]; then
      echo "secret/$db-service-db has another password than postgres-credentials gives role $db" \
        "(left by a partial run?): delete secret/$db-service-db and rerun" >&2
      exit 1
    fi
  done
  secret postgres-credentials <<END
POSTGRES_PASSWORD=$(password)
DRAMA_DB_PASSWORD=$drama
EPISODE_DB_PASSWORD=$episode
END
  secret drama-service-db <<END
DATABASE_URL=$(url drama "$drama")
END
  secret episode-service-db <<END
DATABASE_URL=$(url episode "$episode")
END
fi

# MinIO (local): its root user for the seed's minio-init step only, which creates the two users
# below with these keys (deploy/minio/init.sh, compose's too; it resets their keys each run):
# stream-service may only read objects, media-seed uploads the sample.
if [[ ${1:-} == --local ]]; then
  secret minio-credentials <<END
MINIO_ROOT_USER=minio-admin
MINIO_ROOT_PASSWORD=$(password)
END
  for user in stream-service media-seed; do
    secret "$user-s3" <<END
AWS_ACCESS_KEY_ID=$user
AWS_SECRET_ACCESS_KEY=$(password)
END
  done
fi
