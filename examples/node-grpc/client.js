#!/usr/bin/env node
// A Node.js client of usersigd's gRPC API, with @grpc/grpc-js and
// @grpc/proto-loader. It is documentation first and a test second: it
// calls every method, shows the answers, decodes the error details, and
// exits 1 if any answer is not what it expects (CI runs it against the
// built server: .ci/examples.sh).
//
//   npm ci --ignore-scripts
//   USERSIG_TOKEN=... node client.js
//
// Environment:
//   USERSIG_ADDR           the gRPC address (default 127.0.0.1:50051, as `usersigd --dev`)
//   USERSIG_TOKEN          the caller's bearer token (`usersigd --dev` prints one)
//   USERSIG_APP            the SDKAppID; may be empty when the caller can use one app only
//   USERSIG_LIMITED_TOKEN  optional: the token of a caller with a rate limit of
//                          burst 1, to show RESOURCE_EXHAUSTED and its RetryInfo
//
// Plaintext suits loopback; across hosts use TLS:
// grpc.credentials.createSsl(fs.readFileSync('ca.pem')).
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const ADDR = process.env.USERSIG_ADDR || '127.0.0.1:50051';
const TOKEN = process.env.USERSIG_TOKEN || '';
const APP = process.env.USERSIG_APP || ''; // a string: uint64 fields are strings here
const LIMITED_TOKEN = process.env.USERSIG_LIMITED_TOKEN || '';

// The repository's proto, loaded as it is, so the client cannot drift from
// the server.
const REPO_PROTO = path.join(__dirname, '..', '..', 'proto');

// The loader's defaults make the API hard to use, silently:
// - keepCase: false renames user_id to userId, and a request written with
//   user_id (as the proto and the README's grpcurl examples write it) has
//   that field silently DROPPED;
// - uint64 fields (sdk_app_id) and Timestamp seconds come back as Long
//   objects, enums (status, kind) as numbers, and a field at its default is
//   absent: `valid` is undefined, not false, on a MALFORMED ticket.
const LOADER_OPTIONS = {
  keepCase: true, // field names as in the proto: user_id, sdk_app_id
  longs: String, // 64-bit numbers as decimal strings: exact, JSON-safe
  enums: String, // 'VERIFY_STATUS_VALID', not 1
  defaults: true, // valid: false, key_id: '' ... present, not undefined
  oneofs: true, // private_map_key.room says which of room_id/room_str is set
  includeDirs: [REPO_PROTO],
};

const pkg = grpc.loadPackageDefinition(protoLoader.loadSync('usersig/v1/usersig.proto', LOADER_OPTIONS));
const client = new pkg.usersig.v1.UserSigService(ADDR, grpc.credentials.createInsecure());

// call invokes a method with the bearer token and a deadline, as a promise.
function call(method, request, token = TOKEN, c = client) {
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    c[method](request, md, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

// ---- Errors: google.rpc.Status in the grpc-status-details-bin trailer ----
//
// usersigd's errors carry details: google.rpc.BadRequest naming the field
// (INVALID_ARGUMENT) and google.rpc.RetryInfo (RESOURCE_EXHAUSTED). grpc-js
// gives the trailer as raw bytes; decode them with protobufjs (the library
// proto-loader itself uses) and the two google/rpc protos shipped here.
const rpc = new protobuf.Root().loadSync(
  ['status.proto', 'error_details.proto'].map((f) => path.join(__dirname, 'proto', 'google', 'rpc', f)),
  { keepCase: true },
);
const TO_OBJECT = { longs: String, enums: String, defaults: true };

// statusDetails returns the error's details as plain objects, each with its
// '@type' (e.g. 'google.rpc.BadRequest'), or [] when it has none.
function statusDetails(err) {
  const [bin] = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (!bin) return [];
  const Status = rpc.lookupType('google.rpc.Status');
  const st = Status.decode(bin);
  return st.details.map((any) => {
    const name = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const type = rpc.lookup(name);
    if (!(type instanceof protobuf.Type)) return { '@type': name }; // a detail we do not know
    return { '@type': name, ...type.toObject(type.decode(any.value), TO_OBJECT) };
  });
}

// durationMs turns a google.protobuf.Duration ({seconds: '1', nanos: 5e8}) into milliseconds.
const durationMs = (d) => Number(d.seconds) * 1000 + d.nanos / 1e6;
// isoTime turns a google.protobuf.Timestamp into an ISO 8601 string.
const isoTime = (t) => new Date(Number(t.seconds) * 1000 + t.nanos / 1e6).toISOString();

// ---- The checks ----
let failures = 0;
function check(what, ok, got) {
  if (ok) {
    console.log(`ok: ${what}`);
  } else {
    failures++;
    console.log(`FAIL: ${what}: got ${JSON.stringify(got)}`);
  }
}

// expectError makes a call that must fail with the gRPC code, and returns the error's details.
async function expectError(what, code, method, request, token, c) {
  try {
    await call(method, request, token, c);
  } catch (err) {
    const details = statusDetails(err);
    check(`${what}: ${grpc.status[code]}`, err.code === code, { code: grpc.status[err.code], message: err.details });
    console.log(`    message: ${err.details}`);
    for (const d of details) console.log(`    detail: ${JSON.stringify(d)}`);
    return details;
  }
  check(`${what}: ${grpc.status[code]}`, false, 'the call succeeded');
  return [];
}

// badField returns the field a BadRequest detail names, if any.
function badField(details) {
  const br = details.find((d) => d['@type'] === 'google.rpc.BadRequest');
  return br && br.field_violations.length > 0 ? br.field_violations[0].field : undefined;
}

async function main() {
  if (!TOKEN) throw new Error('set USERSIG_TOKEN (usersigd --dev prints one)');
  const app = APP ? { sdk_app_id: APP } : {};

  // GenerateUserSig. ttl is a google.protobuf.Duration: {seconds}.
  const gen = await call('GenerateUserSig', { ...app, user_id: 'alice', ttl: { seconds: 86400 } });
  console.log(
    `GenerateUserSig: sdk_app_id=${gen.sdk_app_id} user_id=${gen.user_id} key_id=${gen.key_id} ` +
      `expire_time=${isoTime(gen.expire_time)} user_sig=(${gen.user_sig.length} characters, a credential: never log it)`,
  );
  check('GenerateUserSig: a user_sig', typeof gen.user_sig === 'string' && gen.user_sig.length > 0, gen.user_sig.length);
  check('GenerateUserSig: sdk_app_id is a decimal string (longs: String)', /^[1-9][0-9]*$/.test(gen.sdk_app_id), gen.sdk_app_id);
  check('GenerateUserSig: ttl honoured', Number(gen.expire_time.seconds) - Number(gen.issue_time.seconds) === 86400, {
    issue: gen.issue_time,
    expire: gen.expire_time,
  });

  // VerifyUserSig. A ticket that fails is an answer, not an error.
  const ver = await call('VerifyUserSig', { ...app, user_id: 'alice', user_sig: gen.user_sig });
  console.log(`VerifyUserSig: valid=${ver.valid} status=${ver.status} kind=${ver.kind} tencent_error_code=${ver.tencent_error_code}`);
  check('VerifyUserSig: valid, status as a string (enums: String)', ver.valid === true && ver.status === 'VERIFY_STATUS_VALID', ver);
  check('VerifyUserSig: kind TICKET_KIND_USER_SIG', ver.kind === 'TICKET_KIND_USER_SIG', ver.kind);

  const bad = await call('VerifyUserSig', { ...app, user_id: 'alice', user_sig: 'garbage' });
  console.log(`VerifyUserSig of garbage: valid=${bad.valid} status=${bad.status} malformed_reason=${JSON.stringify(bad.malformed_reason)}`);
  check('VerifyUserSig of garbage: valid is false, not undefined (defaults: true)', bad.valid === false, bad.valid);
  check('VerifyUserSig of garbage: VERIFY_STATUS_MALFORMED, Tencent code 70003', bad.status === 'VERIFY_STATUS_MALFORMED' && bad.tencent_error_code === 70003, bad);

  // GeneratePrivateMapKey: room_id is uint64 on the wire, so pass it as a
  // string (or a number up to 2^53); privilege_map 255 grants everything.
  const pmk = await call('GeneratePrivateMapKey', { ...app, user_id: 'alice', ttl: { seconds: 300 }, room_id: '1234', privilege_map: 255 });
  console.log(`GeneratePrivateMapKey: key_id=${pmk.key_id} expire_time=${isoTime(pmk.expire_time)} private_map_key=(${pmk.private_map_key.length} characters)`);
  const pv = await call('VerifyUserSig', { ...app, user_id: 'alice', user_sig: pmk.private_map_key });
  const grant = pv.private_map_key;
  console.log(`VerifyUserSig of the PrivateMapKey: status=${pv.status} kind=${pv.kind} room=${grant && grant.room} room_id=${grant && grant.room_id} privilege_map=${grant && grant.privilege_map}`);
  check(
    'PrivateMapKey: valid, for room 1234 with privileges 255 (oneofs: room names the field set)',
    pv.status === 'VERIFY_STATUS_VALID' && pv.kind === 'TICKET_KIND_PRIVATE_MAP_KEY' && grant.room === 'room_id' && grant.room_id === 1234 && grant.privilege_map === 255,
    pv,
  );

  // The errors, and their details.
  //
  // A room id wider than 32 bits. Before room_id was uint64, protobufjs cut
  // 4294967303 to 32 bits and the server minted a valid ticket for room 7.
  // Now the whole value reaches the server, which refuses it.
  let d = await expectError('room_id 4294967303 (above 2^32-1)', grpc.status.INVALID_ARGUMENT, 'GeneratePrivateMapKey', {
    ...app,
    user_id: 'alice',
    room_id: '4294967303',
    privilege_map: 255,
  });
  check('room_id 4294967303: BadRequest names room_id', badField(d) === 'room_id', d);

  d = await expectError('privilege_map 256', grpc.status.INVALID_ARGUMENT, 'GeneratePrivateMapKey', { ...app, user_id: 'alice', room_id: '1234', privilege_map: 256 });
  check('privilege_map 256: BadRequest names privilege_map', badField(d) === 'privilege_map', d);

  d = await expectError('user_id "a b"', grpc.status.INVALID_ARGUMENT, 'GenerateUserSig', { ...app, user_id: 'a b' });
  check('user_id "a b": BadRequest names user_id', badField(d) === 'user_id', d);

  await expectError('no token', grpc.status.UNAUTHENTICATED, 'GenerateUserSig', { ...app, user_id: 'alice' }, '');

  // The pitfall itself: with proto-loader's default options, user_id is not
  // a field (the loader wants userId) and is dropped without a word, so the
  // server sees no user id at all.
  const defaults = grpc.loadPackageDefinition(protoLoader.loadSync('usersig/v1/usersig.proto', { includeDirs: [REPO_PROTO] }));
  const naive = new defaults.usersig.v1.UserSigService(ADDR, grpc.credentials.createInsecure());
  d = await expectError('default loader options: user_id silently dropped', grpc.status.INVALID_ARGUMENT, 'GenerateUserSig', { user_id: 'alice' }, TOKEN, naive);
  check('default loader options: the server saw no user_id', badField(d) === 'user_id', d);
  naive.close();

  // Rate limits: RESOURCE_EXHAUSTED with a RetryInfo saying when to retry.
  if (LIMITED_TOKEN) {
    // The caller's bucket holds 1 call: the second call at the latest is refused.
    await call('GenerateUserSig', { ...app, user_id: 'alice' }, LIMITED_TOKEN).catch(() => {});
    d = await expectError('over the rate limit', grpc.status.RESOURCE_EXHAUSTED, 'GenerateUserSig', { ...app, user_id: 'alice' }, LIMITED_TOKEN);
    const retry = d.find((x) => x['@type'] === 'google.rpc.RetryInfo');
    check('over the rate limit: RetryInfo with a retry_delay above 0', retry !== undefined && durationMs(retry.retry_delay) > 0, d);
    if (retry) console.log(`    retry after ${durationMs(retry.retry_delay)} ms`);
  } else {
    console.log('(no USERSIG_LIMITED_TOKEN: the rate-limit example is not run)');
  }
}

main()
  .catch((err) => {
    failures++;
    console.log(`FAIL: ${err.message}`);
  })
  .finally(() => {
    client.close();
    console.log(failures === 0 ? 'node-grpc: all checks passed' : `node-grpc: ${failures} check(s) failed`);
    process.exitCode = failures === 0 ? 0 : 1;
  });
