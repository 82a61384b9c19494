// Preloaded into Azurite (`node --require devstack/azurite_utf8.cjs .../azurite.js`): queue
// message text in UTF-8, whole.
//
// Azurite 3.37.0 (and its source as of this writing) decodes a queue message's bytes piece by
// piece: the request body in `readRequestIntoText` (`segments.join("")` over Buffers) and the
// stored text in `readStreamToString` (`chunk.toString()` per chunk). A character whose UTF-8
// bytes straddle two pieces (near 64 KiB: the stream's chunk size) turns into U+FFFD, so a large
// non-ASCII message came back changed, or was refused as too large. Azure keeps the text as
// sent. Here the request body is decoded as one UTF-8 stream, and stored text as one buffer.
"use strict";
const path = require("path");

const src = path.dirname(process.argv[1]); // node_modules/azurite/dist/src, beside azurite.js
const requests = require(path.join(src, "queue", "generated", "ExpressRequestAdapter.js")).default;
const utils = require(path.join(src, "queue", "utils", "utils.js"));

const bodyStream = requests.prototype.getBodyStream;
requests.prototype.getBodyStream = function getBodyStream() {
  const stream = bodyStream.call(this);
  stream.setEncoding("utf8"); // a StringDecoder: keeps a split character for the next piece
  return stream;
};

utils.readStreamToString = function readStreamToString(stream) {
  return new Promise((resolve, reject) => {
    const pieces = [];
    stream
      .on("data", (piece) => pieces.push(Buffer.isBuffer(piece) ? piece : Buffer.from(piece)))
      .on("end", () => resolve(Buffer.concat(pieces).toString("utf8")))
      .on("error", reject);
  });
};
