// An origin written apart from citadel, from the formats in docs/gateway.md:
// it reads a node key file, makes its own TLS certificate (openssl), seals
// data passports with node's crypto and sends them to a citadel's peer
// listener. tests/gateway_e2e.sh uses it to show that a right passport is
// taken (so the format is what the document says) and that each kind of
// wrong one is refused. Prints one JSON line per case:
// {"case":..., "status":..., "code":..., "receipt":bool}.
//
//   node tests/peer_client.mjs NODE_KEY_FILE HOST:PORT DIR MODEL [replay]
//
// The "kept" case's passport, taken, is saved in DIR/kept.json; with
// "replay", that one is sent again and nothing else (a replay after the
// receiver restarted, which it must still refuse).
import {execFileSync} from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';

const [keyFile, addr, dir, model, mode] = process.argv.slice(2);
const [host, port] = addr.split(':');

// "PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>"
const parts = fs.readFileSync(keyFile, 'utf8').trim().split('+');
const seed = Buffer.from(parts.slice(4).join('+'), 'base64').subarray(1); // base64 holds '+' too
const pkcs8 = (seed32) => Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed32]);
const nodeKey = crypto.createPrivateKey({key: pkcs8(seed), format: 'der', type: 'pkcs8'});

function identity(key, name) {
    const kp = `${dir}/${name}.key.pem`, cp = `${dir}/${name}.cert.pem`;
    fs.writeFileSync(kp, key.export({format: 'pem', type: 'pkcs8'}), {mode: 0o600});
    execFileSync('openssl', ['req', '-x509', '-new', '-key', kp, '-subj', `/CN=${name}`, '-days', '1',
                             '-out', cp], {stdio: 'ignore'});
    return {key: fs.readFileSync(kp), cert: fs.readFileSync(cp)};
}

const b64u = (b) => Buffer.from(b).toString('base64url');

function seal(p, key) {
    const body = JSON.stringify({v: 1, id: p.id, origin: p.origin,
                                 origin_jurisdiction: p.origin_jurisdiction, to: p.to,
                                 classes: p.classes, declared: p.declared, policy: p.policy,
                                 rule: p.rule, digest: p.digest, purpose: p.purpose,
                                 issued: p.issued, expires: p.expires});
    const sig = crypto.sign(null, Buffer.concat([Buffer.from('citadel-passport/v1\n'),
                                                 Buffer.from(body)]), key);
    return `${b64u(body)}.${b64u(sig)}`;
}

function passportFor(body, salt, over = {}) {
    const now = Math.floor(Date.now() / 1000);
    return {id: crypto.randomBytes(16).toString('hex'), origin: 'de', origin_jurisdiction: 'DE',
            to: 'fr', classes: ['public'], declared: [], policy: 'ab'.repeat(32),
            rule: 'peer-client', purpose: '',
            digest: crypto.createHmac('sha256', salt).update(body).digest('hex'),
            issued: now, expires: now + 60, ...over};
}

function send(tls, headers, body) {
    return new Promise((resolve) => {
        const req = https.request({host, port, method: 'POST', path: '/v1/peer/chat/completions',
                                   key: tls.key, cert: tls.cert, rejectUnauthorized: false,
                                   agent: false, headers: {'Content-Type': 'application/json',
                                                           ...headers}},
                                  (res) => {
                                      let s = '';
                                      res.on('data', (d) => (s += d));
                                      res.on('end', () => resolve({status: res.statusCode, body: s,
                                                                   receipt: !!res.headers['x-citadel-receipt'] ||
                                                                            s.includes('event: citadel-receipt')}));
                                      res.on('error', (e) => resolve({status: 0, body: String(e)}));
                                  });
        req.on('error', (e) => resolve({status: 0, body: String(e.code || e)}));
        req.end(body);
    });
}

const tls = identity(nodeKey, 'de-by-hand');
const body = JSON.stringify({model, messages: [{role: 'user', content: 'hello there'}], max_tokens: 4,
                             stream: true});
const salt = crypto.randomBytes(32);
const hdr = (wire, s = salt) => ({'X-Citadel-Passport': wire, 'X-Citadel-Passport-Key': b64u(s)});
const good = seal(passportFor(body, salt), nodeKey);

function report(name, r) {
    let code = null;
    try {
        code = JSON.parse(r.body).error.code;
    } catch {}
    console.log(JSON.stringify({case: name, status: r.status, code, receipt: !!r.receipt}));
}

if (mode === 'replay') {
    const k = JSON.parse(fs.readFileSync(`${dir}/kept.json`, 'utf8'));
    report('kept-replayed', await send(tls, hdr(k.wire, Buffer.from(k.salt, 'base64url')), k.body));
    process.exit(0);
}
report('valid', await send(tls, hdr(good), body));
{
    // valid for nearly the longest a receiver takes (docs/gateway.md): kept
    // for a replay after a restart
    const now = Math.floor(Date.now() / 1000);
    const wire = seal(passportFor(body, salt, {expires: now + 290}), nodeKey);
    const r = await send(tls, hdr(wire), body);
    report('kept', r);
    fs.writeFileSync(`${dir}/kept.json`, JSON.stringify({wire, salt: b64u(salt), body}));
}
{
    const now = Math.floor(Date.now() / 1000);
    report('long-lived', await send(tls, hdr(seal(passportFor(body, salt, {expires: now + 400}),
                                                  nodeKey)), body));
}
report('replayed', await send(tls, hdr(good), body));
{
    const other = body.replace('hello there', 'hello THERE');
    report('other-body', await send(tls, hdr(seal(passportFor(body, salt), nodeKey)), other));
}
{
    const w = seal(passportFor(body, salt), nodeKey);
    const [b, s] = w.split('.');
    const j = JSON.parse(Buffer.from(b, 'base64url'));
    j.classes = []; // claims less than it signed
    report('edited', await send(tls, hdr(`${b64u(JSON.stringify(j))}.${s}`), body));
}
{
    const now = Math.floor(Date.now() / 1000);
    report('expired', await send(tls, hdr(seal(passportFor(body, salt, {issued: now - 120,
                                                                         expires: now - 60}),
                                               nodeKey)), body));
}
report('missing', await send(tls, {}, body));
{
    const stranger = crypto.generateKeyPairSync('ed25519').privateKey;
    report('stranger', await send(identity(stranger, 'stranger'), hdr(seal(passportFor(body, salt),
                                                                            stranger)), body));
}
