// An independent MLLP peer for radcds integration tests, built on npm simple-hl7 3.3.0.
//
//   node server.js PORT BEHAVIOUR_FILE RECEIVED_LOG
//
// BEHAVIOUR_FILE holds one word, read again for every message, so a test can change the answer
// while the peer runs: AA, AE or AR (simple-hl7's own ACK with MSA-1 set to that code), or NONE
// (never answer). simple-hl7 builds its ACK with MSH-9 "ACK" and MSH-12 "2.3" whatever it
// received: the quirk radcds must tolerate. Every received MSH-10 is appended to RECEIVED_LOG,
// one line per message, with the answer given.
'use strict';

const fs = require('fs');
const hl7 = require('simple-hl7');

const [port, behaviourFile, receivedLog] = process.argv.slice(2);
if (!port || !behaviourFile || !receivedLog) {
  console.error('usage: node server.js PORT BEHAVIOUR_FILE RECEIVED_LOG');
  process.exit(2);
}

function behaviour() {
  try {
    return fs.readFileSync(behaviourFile, 'utf-8').trim().toUpperCase() || 'AA';
  } catch (err) {
    return 'AA';
  }
}

const app = hl7.tcp();
app.use(function (req, res, next) {
  const answer = behaviour();
  const controlId = req.msg.header.getField(8).toString();
  const status = req.msg.getSegment('OBR') ? req.msg.getSegment('OBR').getField(25).toString() : '';
  fs.appendFileSync(receivedLog, JSON.stringify({ control_id: controlId, answer: answer, obr25: status }) + '\n');
  if (answer === 'NONE') {
    return; // never answer: the sender must time out
  }
  if (answer !== 'AA') {
    res.ack.getSegment('MSA').setField(1, answer);
  }
  res.end();
});
app.use(function (err, req, res, next) {
  console.error('peer error: ' + (err && err.message));
});

app.start(Number(port), 'utf-8');
console.log('hl7peer listening on ' + port);
