// Uses Tencent's official Node.js library (npm tls-sig-api-v2) for the
// smoke test:
//   accept KEY TICKET   checks TICKET the way an SDK reads it (Node's zlib
//                       and JSON) against the library's own HMAC rule
//   usersig KEY USER    mints a UserSig with the library
//   pmk KEY USER        mints a PrivateMapKey (room 4321, privilege 42)
const zlib = require('zlib');
const TLSSigAPIv2 = require('tls-sig-api-v2');
const [cmd, key, arg] = process.argv.slice(2);
const api = new TLSSigAPIv2.Api(1400000000, key);
if (cmd === 'usersig') {
  console.log(api.genUserSig(arg, 3600));
} else if (cmd === 'pmk') {
  console.log(api.genPrivateMapKey(arg, 3600, 4321, 42));
} else if (cmd === 'accept') {
  const raw = Buffer.from(arg.replace(/\*/g, '+').replace(/-/g, '/').replace(/_/g, '='), 'base64');
  const doc = JSON.parse(zlib.inflateSync(raw).toString());
  if (doc['TLS.ver'] !== '2.0' || doc['TLS.sdkappid'] !== 1400000000) {
    console.error('unexpected document', doc);
    process.exit(1);
  }
  const want = api._hmacsha256(doc['TLS.identifier'], doc['TLS.time'], doc['TLS.expire'], doc['TLS.userbuf'] || null);
  if (want !== doc['TLS.sig']) {
    console.error('TLS.sig', doc['TLS.sig'], 'but the library computes', want);
    process.exit(1);
  }
} else {
  console.error('usage: tencent-node.js accept|usersig|pmk KEY ARG');
  process.exit(2);
}
