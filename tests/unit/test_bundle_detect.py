"""claude_bottle.bundle.detect: the decoding layers, each detector, the host checks, and the corpora.

Secrets are made at run time (tests/corpora/shapes.py), with valid checksums, so none sits in the
repository as a literal; the few literals here are published test vectors of checksum formats.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import json
import lzma
import os
import random
import statistics
import subprocess
import sys
import time
import unittest
import urllib.parse
import uuid
import zlib

from claude_bottle.bundle import detect
from tests.corpora import build, corpus, shapes

H = [(b"content-type", b"application/json")]
TEXT = [(b"content-type", b"text/plain")]


def rules(url: str = "https://api.example.com/x", headers: list | None = None, body: bytes | str = b"", **kw) -> set[str]:
    if isinstance(body, str):
        body = body.encode()
    return {f.rule for f in detect.scan(url, headers if headers is not None else H, body, **kw)}


def body_rules(body: bytes | str) -> set[str]:
    return rules(body=body, headers=TEXT)


class Api(unittest.TestCase):
    def test_findings_name_a_rule_and_a_place_never_the_value(self) -> None:
        token = shapes.crc_token(random.Random(1), "ghp_")
        found = detect.scan("https://x.example/?q=1", [(b"x-a", b"b")], json.dumps({"t": token}).encode())
        self.assertEqual(found, [detect.Finding("github-token", "body", "")])
        self.assertNotIn(token, repr(found) + found[0].describe())
        with self.assertRaises(AttributeError):
            found[0].rule = "x"  # type: ignore[misc]  (frozen)

    def test_where_and_layers(self) -> None:
        token = shapes.crc_token(random.Random(2), "ghp_")
        self.assertEqual(detect.scan(f"https://x.example/?t={token}", [], b""), [detect.Finding("github-token", "url", "")])
        found = detect.scan("https://x.example/", [(b"x-data", base64.b64encode(token.encode()))], b"")
        self.assertEqual(found, [detect.Finding("github-token", "header", "base64")])
        self.assertEqual(detect.scan("https://x.example/", [], b"").__len__(), 0)

    def test_importable_as_a_sibling_module(self) -> None:
        """As the addon imports it: `import detect` with the bundle directory on the path."""
        here = os.path.dirname(detect.__file__)
        code = f"import sys; sys.path.insert(0, {here!r}); import detect; print(len(detect.BIP39_WORDS))"
        out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, cwd="/")
        self.assertEqual(out.stdout.strip(), "2048")

    def test_wordlist_is_bip39_english(self) -> None:
        with open(detect.WORDLIST, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        self.assertEqual(digest, "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda")

    def test_placeholders_are_ignored(self) -> None:
        ph = "claude-bottle-placeholder-GITHUB_TOKEN-" + "9f" * 16
        basic = base64.b64encode(f"x-access-token:{ph}".encode())
        headers = [(b"authorization", b"Basic " + basic), (b"x-api-key", ph.encode())]
        body = json.dumps({"api_key": ph, "token": ph, "password": ph}).encode()
        self.assertEqual(rules("https://x.example/?token=" + ph, headers, body, placeholders=[ph.encode()]), set())
        self.assertEqual(rules("https://x.example/?token=" + ph, headers, body), set())  # by their shape too


class Checksums(unittest.TestCase):
    def test_keccak(self) -> None:
        self.assertEqual(detect.keccak256(b"").hex(), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
        for data in (b"", b"abc", bytes(200)):  # the same permutation as SHA3-256, with SHA-3's padding
            self.assertEqual(detect.keccak256(data, pad=0x06), hashlib.sha3_256(data).digest())

    def test_eip55(self) -> None:
        good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's own test vector
        self.assertTrue(detect._eip55_ok(good))
        self.assertFalse(detect._eip55_ok(good.replace("a", "A", 1)))

    def test_bech32_and_base58check(self) -> None:
        self.assertTrue(detect._bech32_ok("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"))  # BIP-173
        self.assertFalse(detect._bech32_ok("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5"))
        self.assertTrue(detect._bech32_ok("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"))  # BIP-350
        self.assertIsNotNone(detect._b58check("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"))
        self.assertIsNone(detect._b58check("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb"))

    def test_luhn_iban_bip39(self) -> None:
        self.assertTrue(detect._luhn_ok("79927398713"))
        self.assertFalse(detect._luhn_ok("79927398710"))
        self.assertTrue(detect._iban_ok("GB82WEST12345698765432"))
        self.assertFalse(detect._iban_ok("GB82WEST12345698765431"))
        self.assertTrue(detect.bip39_checksum_ok(("abandon " * 11 + "about").split()))
        self.assertFalse(detect.bip39_checksum_ok(("abandon " * 12).split()))

    def test_github_crc(self) -> None:
        token = shapes.crc_token(random.Random(3), "ghp_")
        self.assertTrue(detect._crc32_base62_ok(token[4:]))
        self.assertFalse(detect._crc32_base62_ok(token[4:-1] + ("A" if token[-1] != "A" else "B")))


class Decoding(unittest.TestCase):
    def setUp(self) -> None:
        self.rng = random.Random(11)
        self.token = shapes.crc_token(self.rng, "ghp_")
        self.secret = f"DB_PASSWORD={shapes.password(self.rng)}\n"

    def test_base64_in_every_alphabet_and_wrapping(self) -> None:
        raw = (self.secret + self.token + "\n").encode() * 3
        for enc in (base64.b64encode(raw), base64.urlsafe_b64encode(raw), base64.b64encode(raw).rstrip(b"="),
                    base64.urlsafe_b64encode(raw).rstrip(b"=")):
            self.assertIn("github-token", body_rules(enc))
            self.assertIn("github-token", rules(body=json.dumps({"v": enc.decode()})))
        wrapped = b"\n".join(base64.b64encode(raw)[i : i + 76] for i in range(0, len(base64.b64encode(raw)), 76))
        self.assertIn("config-secret", body_rules(wrapped))

    def test_hex_plain_and_delimited(self) -> None:
        raw = self.token.encode()
        for enc in (raw.hex(), raw.hex().upper(), ":".join(f"{c:02x}" for c in raw), "-".join(f"{c:02X}" for c in raw),
                    " ".join(f"{c:02x}" for c in raw), "".join(f"\\x{c:02x}" for c in raw), ", ".join(f"0x{c:02x}" for c in raw),
                    build._xxd(raw)):
            self.assertEqual(body_rules(enc), {"github-token"}, enc[:40])

    def test_percent_html_escapes_base32_bytes(self) -> None:
        full = "".join(f"%{c:02X}" for c in self.token.encode())
        self.assertEqual(body_rules("q=" + full), {"github-token"})
        self.assertEqual(body_rules(urllib.parse.quote(full)), {"github-token"})  # twice
        self.assertEqual(body_rules("".join(f"&#{ord(c)};" for c in self.token)), {"github-token"})
        self.assertEqual(body_rules("x " + "".join(f"\\u{ord(c):04x}" for c in self.token)), {"github-token"})
        self.assertEqual(body_rules(base64.b32encode(self.token.encode())), {"github-token"})
        self.assertEqual(rules(body=json.dumps({"data": list(self.token.encode())})), {"github-token"})

    def test_chains(self) -> None:
        raw = self.token.encode()
        chain = urllib.parse.quote(base64.b64encode(base64.b64encode(raw).hex().encode()).decode(), safe="")
        found = detect.scan("https://x.example/", TEXT, chain.encode())
        self.assertEqual([f.rule for f in found], ["github-token"])
        self.assertEqual(found[0].layers, "url>base64>hex>base64")
        self.assertEqual(body_rules(base64.b64encode(gzip.compress(raw))), {"github-token"})

    def test_binary_layers(self) -> None:
        raw = (self.secret + self.token).encode()
        for enc in (gzip.compress(raw), zlib.compress(raw), zlib.compress(raw)[2:-4], bz2.compress(raw), lzma.compress(raw),
                    build._zipped(raw), build._targz(raw)):
            self.assertIn("github-token", rules(headers=[(b"content-type", b"application/octet-stream")], body=enc))
        pack = build.receive_pack(self.rng, [raw])
        self.assertIn("github-token", body_rules(pack))

    def test_utf16_zero_width_fullwidth(self) -> None:
        for enc in (self.token.encode("utf-16-le"), self.token.encode("utf-16"), self.token.encode("utf-16-be")):
            self.assertEqual(body_rules(enc), {"github-token"})
        for mark in ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"):
            self.assertEqual(body_rules(mark.join(self.token)), {"github-token"})
            self.assertEqual(rules(body=json.dumps({"t": mark.join(self.token)})), {"github-token"})
        self.assertEqual(body_rules("".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in self.token)), {"github-token"})

    def test_split_tokens(self) -> None:
        t = self.token
        self.assertEqual(body_rules(f'k = "{t[:10]}" +\n  "{t[10:]}";'), {"github-token"})
        self.assertEqual(body_rules(f'k = "{t[:3]}" + "{t[3:]}";'), {"github-token"})  # inside the prefix
        self.assertEqual(rules(body=json.dumps({"k": t[:12] + "\n" + t[12:]})), {"github-token"})
        half = len(t) // 2
        self.assertEqual(rules(headers=[(b"x-a", t[:half].encode()), (b"x-b", t[half:].encode())]), {"github-token"})

    def test_bombs_fail_closed_and_stay_bounded(self) -> None:
        c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        bomb = b"".join(c.compress(bytes(1 << 20)) for _ in range(256)) + c.compress(self.token.encode()) + c.flush()
        started = time.monotonic()
        self.assertEqual(rules(headers=[(b"content-type", b"application/octet-stream")], body=bomb), {"decode-limit"})
        self.assertEqual(body_rules(base64.b64encode(bomb)), {"decode-limit"})
        self.assertLess(time.monotonic() - started, 10)
        many = " ".join(base64.b64encode(f"item number {i:08d} of many".encode()).decode() for i in range(detect.MAX_VIEWS + 10))
        self.assertEqual(body_rules(many), {"decode-limit"})

    def test_a_big_ordinary_archive_is_read_not_refused(self) -> None:
        from tests.corpora.snippets import SNIPPETS  # noqa: PLC0415

        text = "".join(SNIPPETS.values()).encode()
        tarball = gzip.compress(text * (6 * (1 << 20) // len(text) + 1))  # inflates to 6 MiB
        self.assertEqual(rules(headers=[(b"content-type", b"application/octet-stream")], body=tarball), set())
        planted = gzip.compress(text * (6 * (1 << 20) // len(text)) + self.token.encode())
        self.assertEqual(rules(headers=[(b"content-type", b"application/octet-stream")], body=planted), {"github-token"})

    def test_malformed_input_does_not_raise(self) -> None:
        for body in (b"\x1f\x8b" + os.urandom(200), b"PK\x03\x04" + os.urandom(300), b"PACK\x00\x00\x00\x02" + os.urandom(100),
                     b"BZh9" + os.urandom(50), "{\"a\": \"\\ud800\"}".encode(), b"[" * 100000, os.urandom(50000),
                     b"%" * 1000 + b"%zz", "\\u12".encode() * 100):
            detect.scan("https://x.example/%ZZ?%", [(b"\xff", b"\xfe\xff")], body)


class PrefixedTokens(unittest.TestCase):
    def test_shapes(self) -> None:
        rng = random.Random(21)
        cases = {
            "github-token": [shapes.crc_token(rng, p) for p in ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")] + [shapes.github_fine_grained(rng)],
            "gitlab-token": [shapes.gitlab_pat(rng), shapes.gitlab_pat_new(rng), shapes.gitlab_pat(rng, "glrt-")],
            "slack-token": [shapes.slack(rng, "xoxb-"), shapes.slack(rng, "xoxp-"), shapes.slack(rng, "xapp-"), shapes.slack(rng, "xoxe.xoxp-")],
            "slack-webhook": [shapes.slack_webhook(rng)], "discord-webhook": [shapes.discord_webhook(rng)],
            "stripe-key": [shapes.stripe(rng), shapes.stripe(rng, "rk_live_", 99), shapes.stripe(rng, "sk_test_", 24)],
            "openai-key": [shapes.openai(rng), shapes.openai(rng, "sk-svcacct-"), shapes.openai(rng, marker=True)],
            "anthropic-key": [shapes.anthropic(rng), shapes.anthropic(rng, "oat01"), shapes.anthropic(rng, "admin01")],
            "google-api-key": [shapes.google_api_key(rng)], "google-oauth-token": [shapes.google_oauth(rng)],
            "aws-access-key-id": [shapes.aws_key_id(rng), shapes.aws_key_id(rng, "ASIA")],
            "npm-token": [shapes.crc_token(rng, "npm_")], "pypi-token": [shapes.pypi(rng)], "huggingface-token": [shapes.hf(rng)],
            "digitalocean-token": [shapes.digitalocean(rng)], "shopify-token": [shapes.shopify(rng)],
            "sendgrid-key": [shapes.sendgrid(rng)], "twilio-key": [shapes.twilio(rng)], "telegram-bot-token": [shapes.telegram(rng)],
            "age-secret-key": [shapes.age_secret(rng)], "terraform-token": [shapes.terraform(rng)],
            "azure-client-secret": [shapes.azure_client_secret(rng)],
        }
        for rule, tokens in cases.items():
            for t in tokens:
                for body in (t, f'"{t}"', f"({t});", f"key={t}&x=1", f"**{t}**", f"{t}."):
                    self.assertEqual(body_rules(body), {rule}, (rule, body))

    def test_without_checksum_a_token_needs_a_left_edge(self) -> None:
        rng = random.Random(22)
        stripe = shapes.stripe(rng)
        self.assertEqual(body_rules("x" + stripe), set())
        self.assertEqual(body_rules("x" + shapes.crc_token(rng, "ghp_")), {"github-token"})  # the CRC is enough

    def test_doc_samples_are_credentials(self) -> None:
        key_id = "AKIA" + "IOSFODNN7EXAMPLE"  # AWS's documentation pair, which gitleaks allowlists
        secret = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
        self.assertEqual(body_rules(key_id), {"aws-access-key-id"})
        self.assertEqual(body_rules(secret), {"aws-secret-key"})
        self.assertEqual(rules(body=json.dumps({"AccessKeyId": key_id, "SecretAccessKey": secret})),
                         {"aws-access-key-id", "aws-secret-key", "config-secret"})

    def test_words_and_presigned_urls_are_not_tokens(self) -> None:
        rng = random.Random(23)
        prose = "Use sk-learn for task-specific models; the key-value store and hf_hub_download are fine."
        self.assertEqual(body_rules(prose), set())
        cred = shapes.aws_key_id(rng) + "/20240514/us-east-1/s3/aws4_request"
        self.assertEqual(rules("https://bucket.s3.amazonaws.com/f?X-Amz-Credential=" + urllib.parse.quote(cred, safe="")
                               + "&X-Amz-Signature=" + rng.randbytes(32).hex(), []), set())
        self.assertEqual(rules("https://bucket.s3.amazonaws.com/f?AWSAccessKeyId=" + shapes.aws_key_id(rng), []), set())


class AwsSecrets(unittest.TestCase):
    def test_alone_and_in_context(self) -> None:
        rng = random.Random(31)
        with_slash = "".join(rng.choice(shapes.ALNUM) for _ in range(20)) + "/" + "".join(rng.choice(shapes.ALNUM) for _ in range(19))
        self.assertEqual(body_rules(with_slash), {"aws-secret-key"})
        self.assertEqual(rules(headers=[(b"x-debug", with_slash.encode())]), {"aws-secret-key"})
        plain = "".join(rng.choice(shapes.ALNUM) for _ in range(40))
        self.assertEqual(body_rules(f"value: {plain}"), {"aws-secret-key"})
        self.assertEqual(body_rules(f"{shapes.aws_key_id(rng)},{plain}"), {"aws-access-key-id", "aws-secret-key"})

    def test_what_is_not_one(self) -> None:
        rng = random.Random(32)
        token = "".join(rng.choice(shapes.ALNUM) for _ in range(40))
        self.assertEqual(body_rules(f"csrf_token={token}"), set())
        self.assertEqual(rules(headers=[(b"x-csrf-token", token.encode())]), set())
        for benign in ("/properties/CaCertificatesBundleS3Bucket", "policy/AWSMigrationHubOrchestratorPlugin",
                       base64.b64encode(b"abcdefghijklmnopqrstuvwxyzABCD").decode(),  # base64 of text
                       "K8SContainerStatusReasonCrashLoopBackOff", rng.randbytes(20).hex()):
            self.assertEqual(body_rules(f"x {benign} y"), set(), benign)
        jwt = shapes.jwt(rng, "HS256", exp=1600000000)
        self.assertEqual(body_rules(jwt), set())


class ConfigSecrets(unittest.TestCase):
    def setUp(self) -> None:
        self.rng = random.Random(41)
        self.pw = shapes.password(self.rng)

    def test_formats(self) -> None:
        pw, rng = self.pw, self.rng
        for text in (f"DB_PASSWORD={pw}", f"export API_SECRET='{pw}'", f"db:\n  password: {pw}\n", f'{{"client_secret": "{pw}"}}',
                     f"[client]\npassword = \"{pw}\"", f"<password>{pw}</password>", f"--password={pw}", f"--password {pw}",
                     f"id,email,password\n1,a@example.com,{pw}\n", f"machine api.example.com login me password {pw}",
                     f"postgres://app:{urllib.parse.quote(pw)}@db.internal:5432/app", f"Server=x;User ID=a;Password={pw};",
                     f"- name: DB_PASSWORD\n  value: {pw}\n", f"CREATE USER x IDENTIFIED BY '{pw}';", f"mysql -u root -p'{pw}' db",
                     f"curl -u admin:{pw} https://ci.internal/", f"Authorization: Bearer {pw}", f"password: {base64.b64encode(pw.encode()).decode()}",
                     f"HEROKU_API_KEY={uuid.UUID(int=rng.getrandbits(128))}"):
            found = body_rules(text)
            self.assertTrue(found & {"config-secret", "netrc-password", "connection-string-password"}, text)
        self.assertEqual(rules(body=json.dumps({"env": [{"name": "API_TOKEN", "value": pw}]})), {"config-secret"})

    def test_references_placeholders_and_code_are_not_secrets(self) -> None:
        for text in ('"password": "${DB_PASSWORD}"', "DB_PASSWORD=changeme", "API_KEY=your-api-key-here", "password = os.environ['PW']",
                     "token = jwt.encode(payload, settings.secret_key)", "password: str = ''", "secret_key = get_secret()",
                     "PASSWORD=<password>", "password: !Ref DbPassword", "PGPASSWORD=$PGPASS psql", 'password="test-password"',
                     "password: postgres", "POSTGRES_PASSWORD: example", "max_tokens: 4096", "token_type: bearer",
                     'tokenizer: "cl100k_base"', "auth: true", "api_key_header = 'x-api-key'", "password_hash = $2b$12$abcdefghij",
                     "NextToken: abCDeFGhiJKlmnOPqrSTuvwxYZ1aBCdEFghijK7LM51n", "ClientToken: 2b7c4c3e-6f6b-4b8c-9d1a-1f2e3d4c5b6a",
                     "secret: arn:aws:secretsmanager:us-east-1:123456789012:secret:app-db-x1y2z3", "user_password = request.form['password']",
                     "Token.Keyword: 'italic #A3AAB2'", "password: geheim$parole", "expires_at: 2024-05-14T10:22:31Z",
                     "mysql -u root -p\"$MYSQL_PASSWORD\" db", "curl -u \"$USER:$TOKEN\" https://x", "-----BEGIN PRIVATE KEY-----",
                     'csrf_token = "' + "".join(self.rng.choice(shapes.ALNUM) for _ in range(40)) + '"'):
            self.assertEqual(body_rules(text), set(), text)

    def test_key_names(self) -> None:
        for key in ("password", "DB_PASSWORD", "dbPassword", "x-api-key", "APIKEY", "client_secret", "aws_secret_access_key",
                    "AccountKey", "_authToken", "GITHUB_PAT", "passphrase", "smtp_pass", "SigningKey"):
            self.assertTrue(detect.key_is_secret(key), key)
        for key in ("max_tokens", "token_type", "password_hash", "public_key", "primary_key", "keyboard", "author", "secret_name",
                    "csrf_token", "next_token", "cache_key", "secretsmanager", "X-Amz-Credential", "PWD_DIR", "api_key_id"):
            self.assertFalse(detect.key_is_secret(key), key)


class PrivateKeysAndJwts(unittest.TestCase):
    def test_private_keys(self) -> None:
        rng = random.Random(51)
        for text in (shapes.pem("RSA PRIVATE KEY", shapes.rsa_der(rng)), shapes.pem("PRIVATE KEY", shapes.pkcs8_der(rng)),
                     shapes.pem("EC PRIVATE KEY", shapes.ec_der(rng)), shapes.openssh_key(rng),
                     shapes.pem("ENCRYPTED PRIVATE KEY", rng.randbytes(800)), shapes.pem("PGP PRIVATE KEY BLOCK", rng.randbytes(600)),
                     base64.b64encode(shapes.rsa_der(rng)).decode(), "".join(shapes.openssh_key(rng).split("\n")[1:-2])):
            self.assertEqual(body_rules(text), {"private-key"}, text[:40])
        escaped = json.dumps({"private_key": shapes.pem("PRIVATE KEY", shapes.pkcs8_der(rng))})
        self.assertEqual(rules(body=escaped), {"private-key"})
        self.assertEqual(body_rules('if pem.startswith("-----BEGIN PRIVATE KEY-----"): raise'), set())
        self.assertEqual(body_rules(shapes.pem("PUBLIC KEY", rng.randbytes(270)) + shapes.pem("CERTIFICATE", rng.randbytes(900))), set())

    def test_jwts(self) -> None:
        rng = random.Random(52)
        for alg in ("HS256", "RS256", "ES256"):
            live = shapes.jwt(rng, alg)
            self.assertEqual(rules(body=json.dumps({"session": live})), {"jwt"}, alg)
            self.assertEqual(rules(f"https://x.example/?t={live}", []), {"jwt"})  # and not its entropy
            self.assertEqual(rules(headers=[(b"authorization", f"Bearer {live}".encode())]), set())  # API auth
            self.assertEqual(rules(headers=[(b"cookie", f"s={live}".encode())]), set())
        sample = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
                  ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
        for harmless in (sample, shapes.jwt(rng, exp=1600000000), shapes.jwt(rng, "none"), shapes.jwt(rng, exp=None, iat=1516239022),
                         "eyJhbGciOiJIUzI1NiJ9.eyJmb28iOiJiYXIifQ.not-a-signature"):
            self.assertEqual(rules(body=json.dumps({"token": harmless})), set())


class PaymentAndCrypto(unittest.TestCase):
    def test_cards(self) -> None:
        rng = random.Random(61)
        for brand in ("visa", "mastercard", "amex", "discover", "jcb", "diners", "unionpay"):
            n = shapes.card(rng, brand)
            for text in (n, shapes.group_card(n), shapes.group_card(n, "-"), f"cc={n}&x=1", f"{n},12/29"):
                self.assertEqual(body_rules(text), {"card-number"}, (brand, text))
        luhn_only = shapes.luhn_complete("9" + "1" * 14)  # valid Luhn, no issuer
        for text in (luhn_only, f"0.{shapes.card(rng)}", f"id{shapes.card(rng)}", f"4828147466240000*t**12",
                     str(int(time.time() * 1000)), "4031078400000", "+4915112345678"):
            self.assertEqual(body_rules(text), set(), text)

    def test_ibans(self) -> None:
        rng = random.Random(62)
        for country in ("DE", "GB", "FR", "NL", "IT", "CH", "NO"):
            s = shapes.iban(rng, country)
            for text in (s, shapes.group_iban(s), s.lower(), f"iban: {shapes.group_iban(s).replace(' ', '-')}"):
                self.assertEqual(body_rules(text), {"iban"}, text)
        self.assertEqual(body_rules("DE00" + "1" * 18), set())
        self.assertEqual(body_rules("VAT DE123456789, order GB1234567890"), set())

    def test_wallets(self) -> None:
        rng = random.Random(63)
        for w, rule in ((shapes.btc_address(rng), "crypto-address"), (shapes.btc_address(rng, 0x05), "crypto-address"),
                        (shapes.segwit(rng), "crypto-address"), (shapes.segwit(rng, taproot=True), "crypto-address"),
                        (shapes.segwit(rng).upper(), "crypto-address"), (shapes.eth_address(rng), "crypto-address"),
                        (shapes.wif(rng), "crypto-private-key"), (shapes.xkey(rng), "crypto-private-key"),
                        (shapes.xkey(rng, False), "crypto-address"), (shapes.nsec(rng), "crypto-private-key")):
            self.assertEqual(body_rules(f"to {w} now"), {rule}, w)
        self.assertEqual(body_rules("0x" + rng.randbytes(20).hex()), set())  # no EIP-55 case: not judged
        self.assertEqual(body_rules("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"), set())

    def test_seed_phrases(self) -> None:
        rng = random.Random(64)
        for n in (12, 15, 18, 21, 24):
            phrase = shapes.seed_phrase(rng, n)
            words = phrase.split()
            for text in (phrase, phrase.upper(), ", ".join(words), json.dumps(words), "\n".join(f"{i}. {w}" for i, w in enumerate(words, 1)),
                         "+".join(words), "seed: " + phrase + " thanks"):
                self.assertEqual(body_rules(text), {"seed-phrase"}, text[:60])
        self.assertEqual(body_rules(shapes.random_words(rng, 12)), {"seed-phrase"})  # exactly 12 list words
        self.assertEqual(body_rules(" ".join(detect.BIP39_WORDS)), set())  # the list itself
        self.assertEqual(body_rules("start zero one one zero one one one zero zero one zero one one one zero one"), set())
        prose = "the agent will review the code, then open a pull request and wait for the tests to pass before merging it"
        self.assertEqual(body_rules(prose), set())


class Urls(unittest.TestCase):
    def test_high_entropy_parts(self) -> None:
        rng = random.Random(71)
        for url in (f"https://x.example/c/{''.join(rng.choice(shapes.ALNUM) for _ in range(32))}",
                    f"https://x.example/c?sid={base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip('=')}",
                    f"https://x.example/c?k={urllib.parse.quote(base64.b64encode(rng.randbytes(32)).decode())}",
                    f"https://x.example/c/{rng.randbytes(48).hex()}", f"https://x.example/c/{b'password=hunter2!x'.hex()}",
                    f"https://x.example/{'/'.join(b'password=hunter2!'.hex()[i:i + 12] for i in range(0, 34, 12))}",
                    f"https://x.example/c?d={base64.b32encode(b'secret value here').decode()}"):
            self.assertTrue(rules(url, []) & {"high-entropy-url", "url-encoded-data"}, url)

    def test_ordinary_urls_pass(self) -> None:
        rng = random.Random(72)
        sha = rng.randbytes(20).hex()
        for url in (f"https://github.com/o/r/commit/{sha}", f"https://registry.npmjs.org/@types/node/-/node-20.11.5.tgz",
                    f"https://files.pythonhosted.org/packages/{sha[:2]}/{sha[2:4]}/{rng.randbytes(30).hex()}/requests-2.31.0-py3-none-any.whl",
                    f"https://proxy.golang.org/github.com/!azure/azure-sdk-for-go/@v/v1.2.3.zip", f"https://x.example/api/{rng.randbytes(16).hex()}",
                    "https://api.example.com/v1/items/550e8400-e29b-41d4-a716-446655440000?page=2&per_page=100",
                    f"https://ghcr.io/v2/o/i/blobs/sha256:{rng.randbytes(32).hex()}", "https://ipfs.io/ipfs/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
                    "https://fonts.gstatic.com/s/inter/v13/UcCO3FwrK3iLTeHuS_fvQtMwCp50KnMw2boKoduKmMEVuLyfAZ9hiA.woff2",
                    "https://api.anthropic.com/v1/files/file_011CNha8iCJcU1wXNR6q4V8w", "https://api.stripe.com/v1/customers/cus_NffrFeUfNV2Hib",
                    "https://medium.com/c/get-ready-a-new-v8-is-coming-node-js-performance-is-changing-46a63d6da4de",
                    "https://x.example/cb?state=" + base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=") + "&code_challenge=abc",
                    "https://x.example/f?X-Amz-Signature=" + rng.randbytes(32).hex() + "&X-Amz-Security-Token=" + urllib.parse.quote(base64.b64encode(rng.randbytes(400)).decode())):
            self.assertEqual(rules(url, []), set(), url)


class Hosts(unittest.TestCase):
    def test_label_exfil(self) -> None:
        base = "example.com"
        for host in (f"{b'secret-token-value'.hex()}.{base}", f"{'0' * 40}.{base}", f"{base64.b32encode(b'A' * 20).decode().lower().rstrip('=')}.{base}",
                     f"{base64.b32encode(b'pw=hunter2 and more').decode().lower().rstrip('=')}.{base}", f"Y1hjv9EF4Wf0hnPerWJS.{base}",
                     f"{'.'.join(b'secret-token-value'.hex()[i:i + 8] for i in range(0, 36, 8))}.{base}", f"a.b.c.d.e.f.{base}",
                     f"qzkcs8ykqg.9hg6imeafw.wmh2zjvmve.49tjnzf33z.{base}", f"x{'k' * 70}.{base}"):
            self.assertIsNotNone(detect.label_exfil(host, base), host)
            self.assertIsNotNone(detect.label_exfil(host, "*." + base), host)
        for host in ("api.eu-west-1.example.com", "d1234abcd.example.com", "my-bucket-2024.s3.us-west-2.example.com", "git-feature-x.example.com",
                     "ip-10-0-0-1.ec2.example.com", "cdk-hnb659fds-assets-123456789012-us-east-1.example.com", "www.example.com",
                     "5f3c7e2a1b4d6f8e9a0b1c2d--site.example.com", "project-git-main-team.example.com", "other.org"):
            self.assertIsNone(detect.label_exfil(host, base), host)

    def test_denied_services(self) -> None:
        for host in ("pastebin.com", "PASTEBIN.COM.", "transfer.sh", "webhook.site", "eo123.m.pipedream.net", "abc-1-2.ngrok-free.app",
                     "x.trycloudflare.com", "q.oast.fun", "z.burpcollaborator.net", "api.telegram.org", "files.catbox.moe"):
            self.assertIsNotNone(detect.denied_service(host), host)
        for host in ("github.com", "api.github.com", "notpastebin.com", "pastebin.com.example.org", "registry.npmjs.org", "telegram.org"):
            self.assertIsNone(detect.denied_service(host), host)
        self.assertEqual(len({d for d, _ in detect.DENIED_SERVICES}), len(detect.DENIED_SERVICES))  # no duplicates


class Corpora(unittest.TestCase):
    """The attack and benign corpora (tests/corpora, rebuilt by `python3 -m tests.corpora.build`)."""

    @staticmethod
    def verdict(case: corpus.Case) -> set[str]:
        host = urllib.parse.urlsplit(case.url).netloc.rpartition("@")[2].split(":")[0]
        if detect.denied_service(host):
            return {"deny-list"}
        if case.wildcard and detect.label_exfil(host, case.wildcard):
            return {"hostname-label"}
        return {f.rule for f in detect.scan(case.url, case.headers, case.body)}

    def test_every_benign_case_passes(self) -> None:
        cases = corpus.load(corpus.BENIGN)
        self.assertGreaterEqual(len(cases), 150)
        flagged = {c.id: sorted(r) for c in cases if (r := self.verdict(c))}
        self.assertEqual(flagged, {})

    def test_containment_per_category(self) -> None:
        cases = corpus.load(corpus.ATTACKS)
        by: dict[str, list[bool]] = {}
        for case in cases:
            by.setdefault(case.category, []).append(bool(self.verdict(case)))
        lines = [f"  {cat:<24} {sum(v)}/{len(v)} ({100 * sum(v) / len(v):.0f} %)" for cat, v in sorted(by.items())]
        total = sum(sum(v) for v in by.values())
        print(f"\ncontainment per category ({total}/{len(cases)}):\n" + "\n".join(lines))
        self.assertGreaterEqual(total / len(cases), 0.95)
        for cat, v in by.items():
            self.assertGreaterEqual(sum(v) / len(v), 0.8, cat)

    def test_the_seal_round_trips(self) -> None:
        fields = {"url": "https://x.example/", "headers": [["a", "b"]], "body": "text"}
        self.assertEqual(corpus.unseal(corpus.seal(fields)), fields)
        case = corpus.parse({"id": "x", "category": "c", "expect": "block", "sealed": corpus.seal({**fields, "method": "PUT"})})
        self.assertEqual((case.method, case.headers, case.body), ("PUT", [(b"a", b"b")], b"text"))


class Cost(unittest.TestCase):
    def test_a_small_request_is_cheap(self) -> None:
        from bench.dlp import sample_body  # noqa: PLC0415

        body = sample_body(1 << 10, random.Random(5))
        times = []
        for _ in range(50):
            started = time.perf_counter()
            detect.scan("https://api.anthropic.com/v1/messages", H, body)
            times.append(time.perf_counter() - started)
        self.assertLess(statistics.median(times), 0.005)  # typically well under 1 ms

    def test_cost_grows_linearly(self) -> None:
        from bench.dlp import sample_body  # noqa: PLC0415

        rng = random.Random(6)
        small, big = sample_body(64 << 10, rng), sample_body(1 << 20, rng)
        t = []
        for body in (small, big):
            started = time.perf_counter()
            detect.scan("https://api.anthropic.com/v1/messages", H, body)
            t.append(time.perf_counter() - started)
        self.assertLess(t[1], 16 * 3 * t[0] + 0.05)  # 16x the bytes: far from 256x


if __name__ == "__main__":
    unittest.main()
