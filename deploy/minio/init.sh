#!/bin/sh
# minio-init: the media bucket and two users, each with only what it needs. Safe to re-run.
#   stream-service  policy media-read: s3:GetObject on the objects (pre-signed GETs are
#                   checked against the signer's rights when the player fetches them)
#   media-seed      policy media-seed: create and list the bucket, read and write objects
set -eu
bucket="${MEDIA_BUCKET:?}"
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$bucket"

cat > /tmp/media-read.json <<JSON
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::$bucket/*"]}
]}
JSON
cat > /tmp/media-seed.json <<JSON
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:CreateBucket", "s3:ListBucket"],
   "Resource": ["arn:aws:s3:::$bucket"]},
  {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
   "Resource": ["arn:aws:s3:::$bucket/*"]}
]}
JSON
mc admin policy create local media-read /tmp/media-read.json
mc admin policy create local media-seed /tmp/media-seed.json

# attach fails when the policy is already attached (a re-run): then check that it is.
grant() { # user secret policy
  mc admin user add local "$1" "$2"
  mc admin policy attach local "$3" --user "$1" \
    || mc admin user info local "$1" | grep -q "$3"
}
grant stream-service "$STREAM_SERVICE_SECRET" media-read
grant media-seed "$MEDIA_SEED_SECRET" media-seed
echo "bucket $bucket ready; users stream-service (media-read), media-seed (media-seed)"
