"""Source files, configs and tool output of the kind a coding agent sends to its model: every one
mentions passwords, secrets, tokens or keys the way real code does, and none holds one."""

from __future__ import annotations

SNIPPETS: dict[str, str] = {}

SNIPPETS["settings.py"] = '''"""Django settings for the shop project."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = os.environ.get("DJANGO_DEBUG", "false").lower() == "true"
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "localhost").split(",")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DB_NAME", "shop"),
        "USER": os.environ.get("DB_USER", "shop"),
        "PASSWORD": os.environ.get("DB_PASSWORD", ""),
        "HOST": os.environ.get("DB_HOST", "localhost"),
        "PORT": int(os.environ.get("DB_PORT", "5432")),
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
PASSWORD_RESET_TIMEOUT = 60 * 60 * 24
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET")
'''

SNIPPETS[".env.example"] = """# Copy to .env and fill in. Never commit .env.
APP_ENV=development
APP_KEY=
APP_URL=http://localhost:8000
DB_CONNECTION=pgsql
DB_HOST=127.0.0.1
DB_PORT=5432
DB_DATABASE=app
DB_USERNAME=app
DB_PASSWORD=changeme
REDIS_PASSWORD=null
MAIL_PASSWORD=your-mail-password
AWS_ACCESS_KEY_ID=
AWS_SECRET_ACCESS_KEY=
GITHUB_TOKEN=<your-github-token>
OPENAI_API_KEY=your_openai_api_key_here
STRIPE_SECRET=sk_test_your_key_here
JWT_SECRET=${JWT_SECRET}
SENTRY_DSN=
"""

SNIPPETS["config.ts"] = """import { z } from "zod";

const schema = z.object({
  DATABASE_URL: z.string().url(),
  REDIS_URL: z.string().url().optional(),
  JWT_SECRET: z.string().min(32, "JWT_SECRET must be at least 32 characters"),
  GITHUB_CLIENT_ID: z.string(),
  GITHUB_CLIENT_SECRET: z.string(),
  API_KEY_HEADER: z.string().default("x-api-key"),
  TOKEN_TTL_SECONDS: z.coerce.number().default(3600),
});

export type Config = z.infer<typeof schema>;

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    console.error("invalid environment", parsed.error.flatten().fieldErrors);
    throw new Error("invalid environment: see above");
  }
  return parsed.data;
}

export const config = loadConfig();
const apiKey = process.env.API_KEY ?? "";
const password = config.JWT_SECRET;
export const authHeader = (token: string) => ({ Authorization: `Bearer ${token}` });
"""

SNIPPETS["auth.py"] = '''import datetime as dt
import hashlib
import hmac
import secrets

import bcrypt
import jwt
from fastapi import Depends, HTTPException, status
from fastapi.security import OAuth2PasswordBearer

from .config import settings

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token")
ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=12)).decode()


def verify_password(password: str, password_hash: str) -> bool:
    return bcrypt.checkpw(password.encode(), password_hash.encode())


def create_access_token(subject: str, expires_minutes: int = 30) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    payload = {"sub": subject, "iat": now, "exp": now + dt.timedelta(minutes=expires_minutes)}
    return jwt.encode(payload, settings.secret_key, algorithm=ALGORITHM)


def decode_token(token: str = Depends(oauth2_scheme)) -> dict:
    try:
        return jwt.decode(token, settings.secret_key, algorithms=[ALGORITHM])
    except jwt.ExpiredSignatureError:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "token expired")
    except jwt.InvalidTokenError:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid token")


def new_api_key() -> tuple[str, str]:
    """A fresh API key and the digest we store (the key itself is shown once)."""
    key = secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    return key, digest


def check_signature(body: bytes, signature: str, secret: str) -> bool:
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
'''

SNIPPETS["test_auth.py"] = '''import pytest

from app.auth import create_access_token, decode_token, hash_password, verify_password

TEST_PASSWORD = "test-password"
OTHER = "not-the-password"


@pytest.fixture
def user(db):
    return db.create_user(email="alice@example.com", password=hash_password(TEST_PASSWORD))


def test_password_roundtrip(user):
    assert verify_password(TEST_PASSWORD, user.password_hash)
    assert not verify_password(OTHER, user.password_hash)


def test_token_roundtrip(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "unit-test-secret")
    token = create_access_token("42")
    assert decode_token(token)["sub"] == "42"


@pytest.mark.parametrize("payload", [
    {"email": "bob@example.com", "password": "${DB_PASSWORD}"},
    {"email": "carol@example.com", "password": ""},
    {"email": "dave@example.com", "password": "<password>"},
])
def test_login_rejects_bad_payloads(client, payload):
    response = client.post("/auth/login", json=payload)
    assert response.status_code in (400, 401, 422)


def test_login(client, user):
    response = client.post("/auth/login", data={"username": "alice@example.com", "password": TEST_PASSWORD})
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"
    assert "access_token" in response.json()
'''

SNIPPETS["docker-compose.yml"] = """services:
  db:
    image: postgres:16
    environment:
      POSTGRES_USER: postgres
      POSTGRES_PASSWORD: postgres
      POSTGRES_DB: app
    ports: ["5432:5432"]
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres"]
      interval: 5s
  redis:
    image: redis:7
    command: ["redis-server", "--requirepass", "${REDIS_PASSWORD:-devpassword}"]
  app:
    build: .
    environment:
      DATABASE_URL: postgres://postgres:postgres@db:5432/app
      REDIS_URL: redis://:${REDIS_PASSWORD:-devpassword}@redis:6379/0
      SECRET_KEY: ${SECRET_KEY}
      API_TOKEN: ${API_TOKEN:?set API_TOKEN}
    depends_on: [db, redis]
"""

SNIPPETS["deployment.yaml"] = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  labels: {app: api}
spec:
  replicas: 3
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      serviceAccountName: api
      containers:
        - name: api
          image: ghcr.io/example/api:1.14.2
          env:
            - name: DB_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: api-db
                  key: password
            - name: API_TOKEN
              valueFrom:
                secretKeyRef: {name: api-tokens, key: token}
            - name: LOG_LEVEL
              value: info
          ports:
            - containerPort: 8080
---
apiVersion: v1
kind: Secret
metadata:
  name: api-db
type: Opaque
stringData:
  password: REPLACE_ME
"""

SNIPPETS["ci.yml"] = """name: release
on:
  push:
    tags: ["v*"]
permissions:
  contents: write
  id-token: write
jobs:
  publish:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@b4ffde65f46336ab88eb53be808477a3936bae11
      - uses: actions/setup-node@60edb5dd545a775178f52524783378180af0d1f8
        with:
          node-version: 20
          registry-url: https://registry.npmjs.org
      - run: npm ci
      - run: npm publish --provenance --access public
        env:
          NODE_AUTH_TOKEN: ${{ secrets.NPM_TOKEN }}
      - name: Upload to S3
        env:
          AWS_ACCESS_KEY_ID: ${{ secrets.AWS_ACCESS_KEY_ID }}
          AWS_SECRET_ACCESS_KEY: ${{ secrets.AWS_SECRET_ACCESS_KEY }}
        run: aws s3 sync dist/ s3://example-releases/${GITHUB_REF_NAME}/
"""

SNIPPETS["main.tf"] = """variable "db_password" {
  type      = string
  sensitive = true
}

resource "aws_db_instance" "main" {
  identifier          = "app-prod"
  engine              = "postgres"
  engine_version      = "16.2"
  instance_class      = "db.t4g.medium"
  username            = "app"
  password            = var.db_password
  skip_final_snapshot = false
}

resource "aws_secretsmanager_secret" "api" {
  name = "app/api-token"
}

output "db_endpoint" {
  value = aws_db_instance.main.endpoint
}
"""

SNIPPETS["client.go"] = """package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"
)

// Client talks to the billing API with a bearer token from the environment.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

var ErrNoToken = errors.New("BILLING_API_TOKEN is not set")

func New() (*Client, error) {
	token := os.Getenv("BILLING_API_TOKEN")
	if token == "" {
		return nil, ErrNoToken
	}
	return &Client{BaseURL: "https://billing.internal.example", Token: token, HTTP: &http.Client{Timeout: 10 * time.Second}}, nil
}

func (c *Client) Do(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", fmt.Sprintf("Bearer %s", c.Token))
	return c.HTTP.Do(req)
}
"""

SNIPPETS["lib.rs"] = """use std::env;

#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn from_env() -> Result<Self, env::VarError> {
        Ok(Self {
            username: env::var("SMTP_USERNAME")?,
            password: env::var("SMTP_PASSWORD")?,
        })
    }
}

pub fn redact(secret: &str) -> String {
    if secret.len() <= 4 {
        return "****".to_string();
    }
    format!("{}****", &secret[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts() {
        assert_eq!(redact("abc"), "****");
        assert_eq!(redact("hunter2"), "hunt****");
    }
}
"""

SNIPPETS["migration.sql"] = """CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    api_token_digest CHAR(64),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE password_resets (
    token_digest CHAR(64) PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    expires_at TIMESTAMPTZ NOT NULL
);

-- local development only
CREATE USER app_readonly WITH PASSWORD 'readonly';
GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_readonly;
"""

SNIPPETS["install.sh"] = """#!/usr/bin/env bash
set -euo pipefail

read -r -s -p "Database password: " DB_PASSWORD
echo
export DB_PASSWORD

if [[ -z "${GITHUB_TOKEN:-}" ]]; then
  echo "GITHUB_TOKEN is not set; create one at https://github.com/settings/tokens" >&2
  exit 1
fi

curl -fsSL -H "Authorization: Bearer ${GITHUB_TOKEN}" \\
  -H "Accept: application/vnd.github+json" \\
  https://api.github.com/repos/example/tools/releases/latest -o release.json

openssl genrsa -out server.key 4096
openssl req -new -x509 -key server.key -out server.crt -days 365 -subj "/CN=localhost"
ssh-keygen -t ed25519 -f ~/.ssh/deploy_key -N "" -C "deploy@example"
"""

SNIPPETS["pem_check.py"] = '''PEM_PRIVATE = "-----BEGIN PRIVATE KEY-----"
PEM_RSA = "-----BEGIN RSA PRIVATE KEY-----"


def looks_like_private_key(text: str) -> bool:
    """True when text starts a PEM private key block (we refuse to log those)."""
    head = text.lstrip()[:40]
    return head.startswith(PEM_PRIVATE) or head.startswith(PEM_RSA) or "PRIVATE KEY-----" in head


def mask_token(token: str) -> str:
    return token[:4] + "..." + token[-4:] if len(token) > 12 else "***"
'''

SNIPPETS["README.md"] = """# payments-service

## Configuration

| variable | meaning |
| --- | --- |
| `STRIPE_SECRET_KEY` | your Stripe secret key (`sk_live_...` in production, `sk_test_...` locally) |
| `STRIPE_WEBHOOK_SECRET` | the signing secret of the webhook endpoint (`whsec_...`) |
| `DATABASE_URL` | e.g. `postgres://user:password@localhost:5432/payments` |
| `API_TOKEN` | a token clients send as `Authorization: Bearer <token>` |

Never put real credentials in this file. For local development copy `.env.example` to `.env`.

```bash
export STRIPE_SECRET_KEY=sk_test_...
export DATABASE_URL=postgres://payments:payments@localhost:5432/payments
make dev
```

Rotate the API token with `make rotate-token`; the old token keeps working for 24 hours.
"""

SNIPPETS["webhook.js"] = """const crypto = require("crypto");
const express = require("express");

const app = express();
const SECRET = process.env.WEBHOOK_SECRET;

function verify(req) {
  const signature = req.get("X-Hub-Signature-256") || "";
  const digest = "sha256=" + crypto.createHmac("sha256", SECRET).update(req.rawBody).digest("hex");
  return crypto.timingSafeEqual(Buffer.from(signature), Buffer.from(digest));
}

app.post("/webhook", express.raw({ type: "application/json" }), (req, res) => {
  req.rawBody = req.body;
  if (!verify(req)) return res.status(401).send("bad signature");
  const event = JSON.parse(req.body.toString("utf8"));
  console.log("delivery", req.get("X-GitHub-Delivery"), event.action);
  res.sendStatus(204);
});

app.listen(process.env.PORT || 3000);
"""

SNIPPETS["netrc_parse.py"] = '''def parse_netrc(text: str) -> dict[str, tuple[str, str]]:
    """machine HOST login USER password PASS, one entry per machine."""
    entries: dict[str, tuple[str, str]] = {}
    tokens = text.split()
    i = 0
    while i < len(tokens):
        if tokens[i] == "machine":
            host, login, password = tokens[i + 1], "", ""
            i += 2
            while i < len(tokens) and tokens[i] != "machine":
                if tokens[i] == "login":
                    login = tokens[i + 1]
                elif tokens[i] == "password":
                    password = tokens[i + 1]
                i += 2
            entries[host] = (login, password)
        else:
            i += 1
    return entries
'''

SNIPPETS["application.properties"] = """spring.datasource.url=jdbc:postgresql://localhost:5432/inventory
spring.datasource.username=${DB_USER}
spring.datasource.password=${DB_PASSWORD}
spring.jpa.hibernate.ddl-auto=validate
management.endpoints.web.exposure.include=health,info
app.jwt.secret=${JWT_SECRET:dev-only-secret-change-me}
app.jwt.expiration-ms=86400000
"""

SNIPPETS["appsettings.json"] = """{
  "Logging": { "LogLevel": { "Default": "Information" } },
  "ConnectionStrings": {
    "Default": "Server=localhost;Database=Orders;User Id=sa;Password=<YourStrong@Passw0rd>;TrustServerCertificate=True"
  },
  "Jwt": { "Issuer": "orders-api", "Audience": "orders-clients", "Key": "" },
  "Stripe": { "SecretKey": "", "PublishableKey": "" }
}
"""

SNIPPETS["fixtures.json"] = """[
  {"model": "accounts.user", "pk": 1, "fields": {"username": "alice", "email": "alice@example.com",
   "password": "pbkdf2_sha256$600000$REPLACEME$fakehashfortests", "is_staff": true}},
  {"model": "accounts.apitoken", "pk": 1, "fields": {"user": 1, "name": "ci", "token_digest": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "scopes": "read"}},
  {"model": "accounts.user", "pk": 2, "fields": {"username": "bob", "email": "bob@example.com", "password": "!", "is_staff": false}}
]
"""

SNIPPETS["git_log.txt"] = """commit 3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a
Author: Alice Example <alice@example.com>
Date:   Tue May 14 10:22:31 2024 +0200

    auth: rotate the token digest column (no secrets in this diff)

commit 9c0b7e6f5a4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b
Author: Bob Example <bob@example.com>
Date:   Mon May 13 17:01:02 2024 +0200

    config: read DB_PASSWORD from the environment, not settings.py

 app/settings.py | 4 ++--
 1 file changed, 2 insertions(+), 2 deletions(-)
"""

SNIPPETS["npm_output.txt"] = """added 1274 packages, and audited 1275 packages in 41s

214 packages are looking for funding
  run `npm fund` for details

3 moderate severity vulnerabilities

To address all issues, run:
  npm audit fix

"node_modules/semver": {
  "version": "7.6.0",
  "resolved": "https://registry.npmjs.org/semver/-/semver-7.6.0.tgz",
  "integrity": "sha512-EnwXhrlwXMk9gKu5/flx5sv/an57AkRplG3hTK68W7FRDN+k+OWBj65M7719OkA82XLBxrcX0KSHj+X5COhOVg=="
}
"""

SNIPPETS["pytest_output.txt"] = """============================= test session starts ==============================
platform linux -- Python 3.12.3, pytest-8.2.0, pluggy-1.5.0
rootdir: /workspace/app
collected 48 items

tests/test_auth.py ........F.....                                        [ 29%]
tests/test_tokens.py ..................                                  [ 66%]
tests/test_webhooks.py ................                                  [100%]

=================================== FAILURES ===================================
_____________________________ test_login_rate_limit _____________________________

client = <starlette.testclient.TestClient object at 0x7f3a2c1b9d50>

    def test_login_rate_limit(client):
        for _ in range(6):
            client.post("/auth/login", data={"username": "alice", "password": "wrong"})
>       assert client.post("/auth/login", data={"username": "alice", "password": "wrong"}).status_code == 429
E       assert 401 == 429

tests/test_auth.py:88: AssertionError
=========================== short test summary info ============================
FAILED tests/test_auth.py::test_login_rate_limit - assert 401 == 429
========================= 1 failed, 47 passed in 3.21s =========================
"""

SNIPPETS["vault_policy.hcl"] = """path "secret/data/app/*" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "transit/encrypt/app-key" {
  capabilities = ["update"]
}
"""

SNIPPETS["nginx.conf"] = """server {
    listen 443 ssl http2;
    server_name api.example.com;
    ssl_certificate     /etc/nginx/tls/fullchain.pem;
    ssl_certificate_key /etc/nginx/tls/privkey.pem;
    auth_basic           "staging";
    auth_basic_user_file /etc/nginx/htpasswd;
    location / {
        proxy_pass http://127.0.0.1:8080;
        proxy_set_header Authorization $http_authorization;
        proxy_set_header X-Request-Id $request_id;
    }
}
"""

SNIPPETS["crypto_util.py"] = '''import base64
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def encrypt(key: bytes, plaintext: bytes, associated: bytes = b"") -> str:
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, associated)
    return base64.urlsafe_b64encode(nonce + ciphertext).decode()


def decrypt(key: bytes, token: str, associated: bytes = b"") -> bytes:
    raw = base64.urlsafe_b64decode(token)
    return AESGCM(key).decrypt(raw[:12], raw[12:], associated)


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
HEX_DIGITS = "0123456789abcdef"
'''

SNIPPETS["wallet_docs.md"] = """## Wallet integration

The service never stores a seed phrase or a private key. Users connect a wallet in the browser and
sign a challenge; the backend only ever sees the public address and the signature.

* `address`: the checksummed address the user connected
* `signature`: 65 bytes, hex, from `personal_sign`
* `nonce`: the challenge we issued, single use

Never ask a user for their recovery phrase. Support staff will never ask for it either.
"""

SNIPPETS["payment_test.py"] = '''from decimal import Decimal

import pytest

from billing.cards import mask_pan, validate_expiry


def test_mask_pan():
    assert mask_pan("4000********0002") == "4000********0002"


def test_amounts():
    assert Decimal("19.99") * 3 == Decimal("59.97")


@pytest.mark.parametrize("month,year,ok", [(1, 2030, True), (13, 2030, False), (12, 2019, False)])
def test_expiry(month, year, ok):
    assert validate_expiry(month, year) is ok
'''

SNIPPETS["ls_output.txt"] = """total 96
drwxr-xr-x  9 agent agent  4096 May 14 10:20 .
drwxr-xr-x  3 agent agent  4096 May 14 09:58 ..
-rw-r--r--  1 agent agent   412 May 14 09:58 .env.example
drwxr-xr-x  8 agent agent  4096 May 14 10:20 .git
-rw-r--r--  1 agent agent   130 May 14 09:58 .gitignore
-rw-r--r--  1 agent agent  2231 May 14 09:58 README.md
drwxr-xr-x  4 agent agent  4096 May 14 09:58 app
-rw-r--r--  1 agent agent   918 May 14 09:58 docker-compose.yml
-rw-r--r--  1 agent agent   603 May 14 09:58 pyproject.toml
drwxr-xr-x  2 agent agent  4096 May 14 09:58 tests
"""

SNIPPETS["secrets_manager.py"] = '''import json

import boto3


def get_secret(name: str, region: str = "eu-west-1") -> dict:
    """Fetch a JSON secret from AWS Secrets Manager (credentials come from the instance role)."""
    client = boto3.client("secretsmanager", region_name=region)
    response = client.get_secret_value(SecretId=name)
    return json.loads(response["SecretString"])


def db_url(secret_name: str) -> str:
    s = get_secret(secret_name)
    return f"postgresql://{s['username']}:{s['password']}@{s['host']}:{s['port']}/{s['dbname']}"
'''

SNIPPETS["jwks.json"] = """{"keys": [{"kty": "RSA", "use": "sig", "kid": "2024-05-a", "alg": "RS256", "e": "AQAB",
  "n": "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw"}]}
"""

SNIPPETS["minified.js"] = (
    '!function(e,t){"object"==typeof exports&&"undefined"!=typeof module?module.exports=t():"function"==typeof define'
    '&&define.amd?define(t):(e="undefined"!=typeof globalThis?globalThis:e||self).Vt=t()}(this,function(){"use strict";'
    'var e="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",t=function(t){for(var n="",r=0;r<t;r++)'
    'n+=e[Math.random()*64|0];return n},n={primary:"#1f6feb",danger:"#d1242f",muted:"#656d76",bg:"#ffffff"};function r'
    '(e,t){if(!(e instanceof t))throw new TypeError("Cannot call a class as a function")}var o=function(){function e(t)'
    '{r(this,e),this.token=null,this.apiKey=t&&t.apiKey||"",this.password=void 0,this.headers={"Content-Type":"application/json"}}'
    'return e.prototype.setToken=function(e){this.token=e,this.headers.Authorization="Bearer "+e},e.prototype.id=function()'
    '{return t(21)},e}();return{Client:o,colors:n,nanoid:t,version:"3.4.1"}});\n//# sourceMappingURL=vt.min.js.map\n'
)

SNIPPETS["go.sum"] = """github.com/davecgh/go-spew v1.1.1 h1:vj9j/u1bqnvCEfJOwUhtlOARqs3+rkHYY13jYWTU97c=
github.com/davecgh/go-spew v1.1.1/go.mod h1:J7Y8YcW2NihsgmVo/mv3lAwl/skON4iLHjSsI+c5H38=
github.com/google/uuid v1.6.0 h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=
github.com/google/uuid v1.6.0/go.mod h1:TIyPZe4MgqdfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo=
github.com/stretchr/testify v1.9.0 h1:HtqpIVDClZ4nwg75+f6Lvsy/wHu+3BoSGCbBAcpTsTg=
github.com/stretchr/testify v1.9.0/go.mod h1:r2ic/lqez/lEtzL7wO/rwa5dbSLXVDPFyf8C91i36aY=
"""

SNIPPETS["package-lock.json"] = """{
  "name": "web",
  "version": "0.4.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "node_modules/jsonwebtoken": {
      "version": "9.0.2",
      "resolved": "https://registry.npmjs.org/jsonwebtoken/-/jsonwebtoken-9.0.2.tgz",
      "integrity": "sha512-PRp66vJ865SSqOlgqS8hujT5U4AOgMfhrwYIuIhfKaoSCZcirrmASQr8CX7cUg+RMih+hgznrjp99o+W4pJLHQ==",
      "dependencies": {"jws": "^3.2.2", "lodash.includes": "^4.3.0", "ms": "^2.1.1", "semver": "^7.5.4"}
    },
    "node_modules/bcryptjs": {
      "version": "2.4.3",
      "resolved": "https://registry.npmjs.org/bcryptjs/-/bcryptjs-2.4.3.tgz",
      "integrity": "sha512-V/Hy/X9Vt7f3BbPJEi8BdVFMByHi+jNXrYkW3huaybV/kQ0KJg0Y6PkEMbn+zeT+i+SiKZ/HMqJGIIt4LZDqNQ=="
    }
  }
}
"""

SNIPPETS["Cargo.lock"] = """[[package]]
name = "serde"
version = "1.0.197"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "3fb1c873e1b9b056a4dc4c0c198b24c3ffa059243875552b2bd0933b1aee4ce2"
dependencies = [
 "serde_derive",
]

[[package]]
name = "ring"
version = "0.17.8"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "c17fa4cb658e3583423e915b9f3acc01cceaee1860e33d59ebae66adc3a2dc0d"
"""

SNIPPETS["keystore_code.py"] = '''from eth_account import Account


def load_account(keystore_path: str, passphrase: str) -> Account:
    """Decrypt a V3 keystore; the passphrase comes from the user, never from disk."""
    with open(keystore_path) as handle:
        encrypted = handle.read()
    private_key = Account.decrypt(encrypted, passphrase)
    return Account.from_key(private_key)
'''

SNIPPETS["prose.md"] = """I looked through the login flow. The password check happens in `verify_password`, which compares the
bcrypt hash stored in `users.password_hash`; the plain password never touches the database. Tokens are
HS256 JWTs signed with `settings.secret_key` and expire after thirty minutes. Two things worth fixing:
the rate limiter counts failed logins per IP only, so a distributed attempt is not slowed at all, and the
reset token is compared with `==` instead of `hmac.compare_digest`. I will add a per-account counter and
switch the comparison, then run the test suite again. Nothing in the repository contains a real secret:
`.env.example` only has placeholders, and the compose file uses the default postgres password for the
local database, which is fine for development but must never reach production.
"""
