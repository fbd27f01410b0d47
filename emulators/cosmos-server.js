#!/usr/bin/env node
"use strict";
/* eslint-disable no-console, no-continue, no-underscore-dangle */
// Launches @vercel/cosmosdb-server 1.0.1 on plain HTTP with keep-alive, after patching its handlers in-process so
// that it behaves like Cosmos DB where our code depends on it (see shared FACTS.md for the measured gaps):
// 404 for missing items, 404 with substatus 1003 under a missing container or database, quoted entity tags,
// Cosmos's id rules and 2 MB item limit, atomic transactional batches, partition-scoped queries, an incremental
// change feed, TTL, and an account document that advertises http:// endpoints so SDK endpoint discovery also works.
// Patching the library's modules (instead of forking it) keeps the exact pinned npm package as the base.
//
// Usage: node cosmos-server.js [--host 127.0.0.1] [--port 8081]   (port 0 picks a free port)
// Prints one line "Ready to accept HTTP connections at http://HOST:PORT/" once it listens.

const http = require("http");
const path = require("path");
const { randomUUID } = require("crypto");

const LIB = path.join(path.dirname(require.resolve("@vercel/cosmosdb-server/package.json")), "lib");
const lib = name => require(path.join(LIB, name));

const documentsModule = lib("account/documents");
const Items = lib("account/items").default;
const Collections = lib("account/collections").default;
const Account = lib("account").default;
const { parsePartitionKey } = lib("utils/get-partition-from-header");
const getValue = lib("utils/get-value").default;
const docOps = lib("handler/_document-operations");
const { patchOperation } = lib("handler/_patch-operations");
const readItems = lib("handler/_read-items").default;
const readJson = lib("json").default;
const readBody = require(require.resolve("raw-body", { paths: [LIB] }));
const trueHeader = lib("true-header").default;
const cosmosQuery = require(require.resolve("@zeit/cosmosdb-query", { paths: [LIB] })).default;

const ERROR_CODES = {
  400: "BadRequest", 404: "NotFound", 409: "Conflict", 412: "PreconditionFailed", 413: "RequestEntityTooLarge",
  424: "FailedDependency", 500: "InternalServerError"
};
const NOT_FOUND_MESSAGE = "Entity with the specified id does not exist in the system.";
const OWNER_MISSING_MESSAGE = "Owner resource does not exist";
const OWNER_RESOURCE_NOT_FOUND = 1003; // SubStatusCodes.OwnerResourceNotFound in the Cosmos SDKs
const PRECONDITION_MESSAGE = "Operation cannot be performed because one of the specified precondition is not met.";
const PK_HEADER = "x-ms-documentdb-partitionkey";

const fail = (statusCode, message) => ({ statusCode, body: { code: ERROR_CODES[statusCode], message } });
// A write refused before anything is touched; thrown from inside a write, answered with its status (in a batch, as
// that operation's status).
const refusal = (statusCode, message) => Object.assign(new Error(message), { refusal: statusCode });

// Records undo entries while a batch runs, so a failed batch can be rolled back in O(touched keys).
class JournaledMap extends Map {
  set(key, value) {
    if (this.journal) this.journal.push([key, super.has(key), super.get(key)]);
    return super.set(key, value);
  }

  delete(key) {
    if (this.journal && super.has(key)) this.journal.push([key, true, super.get(key)]);
    return super.delete(key);
  }

  rollback() {
    const journal = this.journal || [];
    this.journal = null;
    for (let i = journal.length - 1; i >= 0; i -= 1) {
      const [key, had, value] = journal[i];
      if (had) super.set(key, value);
      else super.delete(key);
    }
  }
}

// ---- Entity tags. Cosmos's `_etag` (and the ETag header) is a quoted entity tag as RFC 9110 writes it, e.g. the JSON
// string "\"00000000-0000-0000-a1b2-c3d4e5f60000\"", new on every write; items.js mints a bare UUID in create() and
// replace(), the only callers of _set. Clients send it back verbatim in If-Match, so the quotes must round-trip.
const baseItemsSet = Items.prototype._set;
Items.prototype._set = function _set(data) {
  return baseItemsSet.call(this, { ...data, _etag: `"${randomUUID()}"` });
};

// If-Match as Cosmos applies it to a write: "*" passes for any current version, otherwise the entity tag must equal the
// stored one exactly, quotes included (the library compared, but knew no "*").
const ifMatchFails = (ifMatch, existing) => Boolean(ifMatch) && ifMatch !== "*" && ifMatch !== existing._etag;

// ---- Item size. Cosmos refuses an item over 2 MB, "UTF-8 length of JSON representation" (learn.microsoft.com, Azure
// Cosmos DB service quotas, per-item limits), with 413 RequestEntityTooLarge, "Request size is too large". The exact
// bound is (2 * 1024 * 1024) - 1 bytes, "(maxResourceSize - resourceSizePadding) from Server settings.xml"
// (azure-cosmos-dotnet-v3 BatchConstants.MaxResourceSizeInBytes): the item as the client writes it, the padding being
// room for the system properties the server adds, which are therefore not counted.
const MAX_ITEM_BYTES = 2 * 1024 * 1024 - 1;
// A transactional batch's whole body: maxBatchRequestBodySize of the same server settings
// (BatchConstants.MaxDirectModeBatchRequestBodySizeInBytes), room for one maximal item with its operation envelope.
const MAX_BATCH_BODY_BYTES = 2202010;
const TOO_LARGE_MESSAGE = "Request size is too large";
const SERVER_PROPERTIES = ["_rid", "_self", "_etag", "_ts", "_attachments", "_lsn"];

function checkSize(item) {
  const written = { ...item };
  SERVER_PROPERTIES.forEach(name => delete written[name]);
  if (Buffer.byteLength(JSON.stringify(written), "utf8") > MAX_ITEM_BYTES) throw refusal(413, TOO_LARGE_MESSAGE);
}

// ---- Item ids. The rule our service holds itself to (CONTRACTS): at most 255 characters, none of / \ ? #. Azure is
// laxer: it takes 1023 bytes ("less than '1024' characters") and stores ids with / \ ? # -- but such an item can then
// not be read, replaced or deleted by its URL (azure-cosmos-dotnet-v3 issues 2573, 2606, 4129), and the Python SDK
// refuses / \ ? # itself on create, upsert and replace, though not inside a batch. Refusing them here, with the 400
// BadRequest the service gives an invalid id, stops an id that would strand a document in production.
const MAX_ID_CHARACTERS = 255;
const RESERVED_ID_CHARACTERS = /[/\\?#]/;

// What Cosmos checks of an item a request carries before it looks at anything stored: size, then id.
function checkItem(body) {
  if (!body || typeof body !== "object" || Array.isArray(body)) return; // the library answers "missing id"
  checkSize(body);
  const { id } = body;
  if (id === undefined || id === null || id === "") return; // the library answers "missing id"
  if (typeof id !== "string") throw refusal(400, "The id of an item must be a string.");
  if ([...id].length > MAX_ID_CHARACTERS || RESERVED_ID_CHARACTERS.test(id)) {
    throw refusal(400, `The input name '${id}' is invalid. Ensure to provide a unique non-empty string less than `
      + `'${MAX_ID_CHARACTERS + 1}' characters, without '/', '\\', '?' or '#'.`);
  }
}

// ---- Effective partition key (Hash V2), needed because the SDK scopes a partition's change feed by EPK range.
const MASK64 = (1n << 64n) - 1n;
const rotl64 = (v, s) => ((v << BigInt(s)) | (v >> BigInt(64 - s))) & MASK64;
const mul64 = (a, b) => (a * b) & MASK64;
function fmix64(v) {
  let k = v;
  k ^= k >> 33n;
  k = mul64(k, 0xff51afd7ed558ccdn);
  k ^= k >> 33n;
  k = mul64(k, 0xc4ceb9fe1a85ec53n);
  return k ^ (k >> 33n);
}
function murmur3x64128(buf) {
  const c1 = 0x87c37b91114253d5n;
  const c2 = 0x4cf5ad432745937fn;
  let h1 = 0n;
  let h2 = 0n;
  const blocks = buf.length - (buf.length % 16);
  for (let i = 0; i < blocks; i += 16) {
    const k1 = mul64(rotl64(mul64(buf.readBigUInt64LE(i), c1), 31), c2);
    h1 = (mul64((rotl64(h1 ^ k1, 27) + h2) & MASK64, 5n) + 0x52dce729n) & MASK64;
    const k2 = mul64(rotl64(mul64(buf.readBigUInt64LE(i + 8), c2), 33), c1);
    h2 = (mul64((rotl64(h2 ^ k2, 31) + h1) & MASK64, 5n) + 0x38495ab5n) & MASK64;
  }
  let k1 = 0n;
  let k2 = 0n;
  for (let i = buf.length - 1; i >= blocks; i -= 1) {
    const shift = BigInt(((i - blocks) % 8) * 8);
    if (i - blocks >= 8) k2 ^= BigInt(buf[i]) << shift;
    else k1 ^= BigInt(buf[i]) << shift;
  }
  h2 ^= mul64(rotl64(mul64(k2, c2), 33), c1);
  h1 ^= mul64(rotl64(mul64(k1, c1), 31), c2);
  const len = BigInt(buf.length);
  h1 ^= len;
  h2 ^= len;
  h1 = (h1 + h2) & MASK64;
  h2 = (h2 + h1) & MASK64;
  h1 = fmix64(h1);
  h2 = fmix64(h2);
  h1 = (h1 + h2) & MASK64;
  h2 = (h2 + h1) & MASK64;
  return [h1, h2];
}
function effectivePartitionKeyV2(value) {
  let encoded;
  if (value === true) encoded = Buffer.from([0x03]);
  else if (value === false) encoded = Buffer.from([0x02]);
  else if (value === null) encoded = Buffer.from([0x01]);
  else if (value === undefined) encoded = Buffer.from([0x00]);
  else if (typeof value === "number") {
    encoded = Buffer.alloc(9);
    encoded[0] = 0x05;
    encoded.writeDoubleLE(value, 1);
  } else if (typeof value === "string") {
    encoded = Buffer.concat([Buffer.from([0x08]), Buffer.from(value, "utf8"), Buffer.from([0xff])]);
  } else return null;
  const [low, high] = murmur3x64128(encoded);
  const hex = high.toString(16).padStart(16, "0") + low.toString(16).padStart(16, "0");
  return ((parseInt(hex.slice(0, 2), 16) & 0x3f).toString(16).padStart(2, "0") + hex.slice(2)).toUpperCase();
}

// ---- Documents: TTL, write order (LSN), change feed, partition filtering and batch transactions.
const BaseDocuments = documentsModule.default;
class Documents extends BaseDocuments {
  constructor(...args) {
    super(...args);
    this._data = new JournaledMap();
    this._index = new JournaledMap();
    this._meta = new JournaledMap(); // rid -> { lsn, writtenMs, epk }
    this._lsn = 0;
  }

  // Every stored write ends in create() or replace(); a patch's result is only known here, so the size is enforced
  // here too, before anything changes.
  create(data) {
    checkSize(data);
    return super.create(data);
  }

  replace(data, original) {
    checkSize(data);
    return super.replace(data, original);
  }

  _set(data) {
    const result = super._set(data);
    this._lsn += 1;
    this._meta.set(data._rid, { lsn: this._lsn, writtenMs: Date.now() });
    return result;
  }

  _remove(data) {
    const partition = this._getPartition(data);
    this._uniqueKeyPaths.forEach(keyPath => {
      const keyValue = getValue(keyPath.slice(1).split("/"), data);
      this._index.delete(this._getId(keyPath, keyValue, partition));
    });
    this._data.delete(data._rid);
    this._meta.delete(data._rid);
  }

  delete(idOrRid, partition) {
    const data = this._item("/id", idOrRid, partition).read();
    if (!data) throw Object.assign(new Error(NOT_FOUND_MESSAGE), { notFound: true });
    this._remove(data);
  }

  // Every point lookup (reads, writes, unique-key checks) goes through here, so expiry is enforced lazily.
  _item(keyPath, value, partition) {
    const item = super._item(keyPath, value, partition);
    const data = item.read();
    if (data && this._isExpired(data)) {
      this._remove(data);
      return super._item(keyPath, value, partition);
    }
    return item;
  }

  _isExpired(data, now = Date.now()) {
    const collection = this._parent.read();
    const defaultTtl = collection ? collection.defaultTtl : undefined;
    if (defaultTtl === undefined || defaultTtl === null) return false;
    const ttl = typeof data.ttl === "number" ? data.ttl : defaultTtl;
    if (ttl <= 0) return false;
    const meta = this._meta.get(data._rid);
    const writtenMs = meta ? meta.writtenMs : data._ts * 1000;
    return now >= writtenMs + ttl * 1000;
  }

  purgeExpired() {
    const collection = this._parent.read();
    if (!collection || collection.defaultTtl === undefined || collection.defaultTtl === null) return;
    const now = Date.now();
    [...this._data.values()].forEach(item => {
      const data = item.read();
      if (this._isExpired(data, now)) this._remove(data);
    });
  }

  _liveData(partitionFilter) {
    this.purgeExpired();
    const data = [...this._data.values()].map(item => item.read());
    return partitionFilter ? data.filter(d => partitionFilter(this._getPartition(d))) : data;
  }

  read(options = {}) {
    if (!this._parent.read()) return null;
    return this._getQuery("SELECT * FROM c").exec(this._liveData(), options);
  }

  query(params, { maxItemCount, continuation }, partitionFilter) {
    const parent = this._parent.read();
    if (!parent) return null;
    const compositeIndexes = (parent.indexingPolicy && parent.indexingPolicy.compositeIndexes) || [];
    try {
      return this._getQuery(params.query).exec(this._liveData(partitionFilter), {
        parameters: params.parameters, udf: this._userDefinedFunctions(), maxItemCount, continuation, compositeIndexes
      });
    } catch (err) {
      err.badRequest = true;
      throw err;
    }
  }

  _epk(rid, data) {
    const meta = this._meta.get(rid);
    if (meta.epk === undefined) meta.epk = effectivePartitionKeyV2(this._getPartition(data));
    return meta.epk;
  }

  // Latest-version change feed: each live item appears once, at the LSN of its last write.
  changeFeed({ sinceLsn, maxItemCount, modifiedSinceMs, epkRange }) {
    this.purgeExpired();
    const changed = [...this._meta.entries()].filter(([, m]) => m.lsn > sinceLsn).sort((a, b) => a[1].lsn - b[1].lsn);
    const documents = [];
    for (const [rid, meta] of changed) {
      if (documents.length >= maxItemCount) break;
      const data = this._data.get(rid).read();
      if (modifiedSinceMs !== null && meta.writtenMs < modifiedSinceMs) continue;
      if (epkRange) {
        const epk = this._epk(rid, data);
        const isPoint = epkRange.min === epkRange.max;
        if (isPoint ? epk !== epkRange.min : epk < epkRange.min || epk >= epkRange.max) continue;
      }
      documents.push({ ...data, _lsn: meta.lsn });
    }
    const full = documents.length < maxItemCount;
    const lastLsn = full ? this._lsn : documents[documents.length - 1]._lsn;
    return { documents, lastLsn: Math.max(lastLsn, sinceLsn) };
  }

  beginTransaction() {
    this._saved = { ridCount: this._ridCount, lsn: this._lsn };
    [this._data, this._index, this._meta].forEach(m => { m.journal = []; });
  }

  commit() {
    [this._data, this._index, this._meta].forEach(m => { m.journal = null; });
  }

  rollback() {
    [this._data, this._index, this._meta].forEach(m => m.rollback());
    this._ridCount = this._saved.ridCount;
    this._lsn = this._saved.lsn;
  }
}
documentsModule.default = Documents; // collection.js reads `documents_1.default` at construction time.

// replace_container rebuilt the Collection object and so dropped every item; carry the children over instead.
const baseCollectionsReplace = Collections.prototype.replace;
Collections.prototype.replace = function replace(data, original) {
  const before = this._data.get(original._rid);
  const result = baseCollectionsReplace.call(this, data, original);
  const after = this._data.get(result._rid);
  if (before && after && before !== after) {
    ["documents", "userDefinedFunctions", "partitionKeyRanges"].forEach(name => {
      after[name] = before[name];
      after[name]._parent = after;
    });
  }
  return result;
};

// ---- Request helpers.
const rawPartitionKey = (req) => {
  const header = req.headers[PK_HEADER];
  return Array.isArray(header) ? header[0] : header;
};
// The library keys items by partition value with the id as fallback; a missing header means "id-partitioned".
const lookupPartition = (raw, id) => (raw === undefined ? id : parsePartitionKey(raw, id));
const partitionHeader = (raw, id) => (raw === undefined ? JSON.stringify([id]) : raw);

// Turns x-ms-documentdb-partitionkey into a predicate over an item's partition value ([{}] = value absent).
function partitionPredicate(raw) {
  if (raw === undefined || raw === "[]") return null;
  let parsed;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw Object.assign(new Error(`invalid ${PK_HEADER} header: ${raw}`), { badRequest: true });
  }
  const wanted = Array.isArray(parsed) ? parsed[0] : parsed;
  if (wanted && typeof wanted === "object") return value => value === undefined;
  return value => value === wanted;
}

const getCollection = (account, { dbId, collId }) => account.database(dbId).collection(collId);

function send(res, result) {
  res.statusCode = result.statusCode;
  return result.body;
}

// ---- Handlers that replace the library's.
function readDocument(account, req, res, params) {
  const collection = getCollection(account, params);
  const data = collection.document(params.docId, lookupPartition(rawPartitionKey(req), params.docId)).read();
  return data || send(res, fail(404, NOT_FOUND_MESSAGE));
}

async function createDocument(account, req, res, params) {
  const body = await readJson(req);
  checkItem(body);
  const collection = getCollection(account, params);
  return send(res, docOps.createOperation(collection, { resourceBody: body }));
}

async function upsertDocument(account, req, res, params) {
  const body = await readJson(req);
  checkItem(body);
  const collection = getCollection(account, params);
  const raw = rawPartitionKey(req);
  const id = body && body.id;
  const existing = id ? collection.document(id, lookupPartition(raw, id)).read() : null;
  if (existing && ifMatchFails(req.headers["if-match"], existing)) return send(res, fail(412, PRECONDITION_MESSAGE));
  return send(res, docOps.upsertOperation(collection, { partitionKey: partitionHeader(raw, id), resourceBody: body }));
}

async function replaceDocument(account, req, res, params) {
  const body = await readJson(req);
  checkItem(body);
  const collection = getCollection(account, params);
  const raw = rawPartitionKey(req);
  const existing = collection.document(params.docId, lookupPartition(raw, params.docId)).read();
  if (!existing) return send(res, fail(404, NOT_FOUND_MESSAGE));
  if (body.id !== params.docId) return send(res, fail(400, "replacing id is not allowed"));
  if (ifMatchFails(req.headers["if-match"], existing)) return send(res, fail(412, PRECONDITION_MESSAGE));
  const input = { partitionKey: partitionHeader(raw, params.docId), resourceBody: body };
  return send(res, docOps.replaceOperation(collection, input));
}

function deleteDocument(account, req, res, params) {
  const collection = getCollection(account, params);
  const raw = rawPartitionKey(req);
  const existing = collection.document(params.docId, lookupPartition(raw, params.docId)).read();
  if (!existing) return send(res, fail(404, NOT_FOUND_MESSAGE));
  if (ifMatchFails(req.headers["if-match"], existing)) return send(res, fail(412, PRECONDITION_MESSAGE));
  const input = { partitionKey: partitionHeader(raw, params.docId), id: params.docId };
  return send(res, docOps.deleteOperation(collection, input));
}

// The library lower-cases the whole filter predicate (string literals included); evaluate it case-preserved here.
function conditionHolds(collection, id, raw, condition) {
  const m = /^\s*(?:select\s+\*\s+)?from\s+(\w+)(?:\s+where\s+([\s\S]+))?$/i.exec(condition);
  if (!m) throw Object.assign(new Error("Invalid condition in patch request."), { badRequest: true });
  const query = `SELECT * FROM ${m[1]} WHERE ${m[1]}.id = @id${m[2] ? ` AND (${m[2]})` : ""}`;
  const found = collection.documents.query({ query, parameters: [{ name: "@id", value: id }] }, {},
    partitionPredicate(raw));
  return found.result.length > 0;
}

function patchDocumentOp(collection, { id, raw, ifMatch, operations, condition }) {
  const existing = collection.document(id, lookupPartition(raw, id)).read();
  if (!existing) return fail(404, NOT_FOUND_MESSAGE);
  if (ifMatchFails(ifMatch, existing)) return fail(412, PRECONDITION_MESSAGE);
  if (condition && !conditionHolds(collection, id, raw, condition)) {
    return fail(412, "Condition specified in the patch request is not satisfied.");
  }
  return patchOperation(collection, { id, partitionKey: partitionHeader(raw, id), operations });
}

async function patchDocument(account, req, res, params) {
  const body = await readJson(req);
  const operations = Array.isArray(body) ? body : body.operations;
  if (!Array.isArray(operations)) {
    return send(res, fail(400, "Invalid patch request: check syntax of patch specification."));
  }
  return send(res, patchDocumentOp(getCollection(account, params), {
    id: params.docId, raw: rawPartitionKey(req), ifMatch: req.headers["if-match"], operations,
    condition: Array.isArray(body) ? undefined : body.condition
  }));
}

async function queryDocuments(account, req, res, params) {
  return readItems(req, res, "Documents", async ({ continuation, maxItemCount }) => {
    const body = await readJson(req);
    if (!body.query) return send(res, fail(400, "missing query"));
    const collection = getCollection(account, params);
    const predicate = partitionPredicate(rawPartitionKey(req));
    if (!predicate && !trueHeader(req, "x-ms-documentdb-query-enablecrosspartition")) {
      const paths = ((collection.read().partitionKey || {}).paths) || [];
      if (paths.length && !cosmosQuery(body.query).containsPartitionKeys(paths)) {
        return send(res, fail(400, "Cross partition query is required but disabled."));
      }
    }
    return collection.documents.query(body, { continuation, maxItemCount }, predicate);
  });
}

function parseLsnEtag(value) {
  const lsn = Number(String(value).replace(/^W\//, "").replace(/"/g, ""));
  if (!Number.isInteger(lsn) || lsn < 0) {
    throw Object.assign(new Error(`invalid change feed continuation etag: ${value}`), { badRequest: true });
  }
  return lsn;
}

function changeFeed(collection, req, res) {
  res.changeFeedHandled = true;
  if (req.headers["a-im"] !== "Incremental Feed") {
    const message = `local emulator: only the latest-version change feed is supported, not ${req.headers["a-im"]}`;
    return send(res, fail(400, message));
  }
  const docs = collection.documents;
  const ifNoneMatch = req.headers["if-none-match"];
  let sinceLsn = 0; // no If-None-Match: from the beginning
  if (ifNoneMatch === "*") sinceLsn = docs._lsn;
  else if (ifNoneMatch) sinceLsn = parseLsnEtag(ifNoneMatch);
  const maxHeader = parseInt(req.headers["x-ms-max-item-count"], 10);
  const modifiedSince = req.headers["if-modified-since"] ? Date.parse(req.headers["if-modified-since"]) : null;
  let epkRange = null;
  if (req.headers["x-ms-start-epk"] !== undefined && req.headers["x-ms-end-epk"] !== undefined) {
    const pk = collection.read().partitionKey || {};
    if (pk.version !== 2 || (pk.kind && pk.kind !== "Hash")) {
      return send(res, fail(400, "local emulator: partition-scoped change feed needs a Hash V2 partition key"));
    }
    epkRange = { min: req.headers["x-ms-start-epk"], max: req.headers["x-ms-end-epk"] };
  }
  const { documents, lastLsn } = docs.changeFeed({
    sinceLsn, maxItemCount: maxHeader > 0 ? maxHeader : Infinity, modifiedSinceMs: modifiedSince, epkRange
  });
  res.setHeader("etag", `"${lastLsn}"`);
  res.setHeader("x-ms-item-count", String(documents.length));
  if (documents.length === 0) {
    res.statusCode = 304;
    return undefined;
  }
  return { _rid: collection.read()._rid, Documents: documents, _count: documents.length };
}

function readDocuments(account, req, res, params) {
  const collection = getCollection(account, params);
  if (req.headers["a-im"]) return changeFeed(collection, req, res);
  return readItems(req, res, "Documents", async options => collection.documents.read(options));
}

function runBatchOperation(collection, op, headerPk) {
  const raw = op.partitionKey !== undefined ? op.partitionKey : headerPk;
  const body = op.resourceBody;
  const type = op.operationType;
  const id = ["Create", "Upsert"].includes(type) ? body && body.id : op.id;
  if (body && ["Create", "Upsert", "Replace"].includes(type)) {
    checkItem(body);
    const predicate = partitionPredicate(raw);
    if (predicate && !predicate(collection.documents._getPartition(body))) {
      return fail(400, "Partition key provided either doesn't correspond to definition in the collection "
        + "or doesn't match partition key field values specified in the document.");
    }
    if (type === "Replace" && body.id !== op.id) return fail(400, "replacing id is not allowed");
  }
  const existing = id === undefined ? null : collection.document(id, lookupPartition(raw, id)).read();
  if (op.ifNoneMatch && existing && (op.ifNoneMatch === "*" || op.ifNoneMatch === existing._etag)) {
    return type === "Read" ? { statusCode: 304 } : fail(412, "Resource matches the If-None-Match precondition.");
  }
  if (existing && ["Replace", "Upsert", "Delete"].includes(type) && ifMatchFails(op.ifMatch, existing)) {
    return fail(412, PRECONDITION_MESSAGE);
  }
  const input = { id, partitionKey: partitionHeader(raw, id), resourceBody: body };
  switch (type) {
    case "Create": return docOps.createOperation(collection, input);
    case "Upsert": return docOps.upsertOperation(collection, input);
    case "Replace": return docOps.replaceOperation(collection, input);
    case "Delete": return docOps.deleteOperation(collection, input);
    case "Read": return docOps.readOperation(collection, input);
    case "Patch":
      return patchDocumentOp(collection, {
        id, raw, ifMatch: op.ifMatch, operations: (body || {}).operations || [], condition: (body || {}).condition
      });
    default: return fail(400, `Operation type '${type}' is not supported in Batch.`);
  }
}

// Cosmos semantics: all operations share one partition and commit together; on failure the failing operation
// reports its own status, every other one 424, and the HTTP status is 207.
async function batchDocuments(account, req, res, params) {
  const body = await readBody(req);
  if (body.length > MAX_BATCH_BODY_BYTES) throw refusal(413, TOO_LARGE_MESSAGE); // the whole batch, not one operation
  const ops = JSON.parse(body.toString("utf8"));
  const collection = getCollection(account, params);
  if (!Array.isArray(ops) || ops.length === 0) return send(res, fail(400, "Batch request has no operations."));
  if (ops.length > 100) return send(res, fail(400, "Batch request has more operations than what is supported."));
  const docs = collection.documents;
  docs.purgeExpired();
  docs.beginTransaction();
  const results = [];
  try {
    for (const op of ops) {
      let result;
      try {
        result = runBatchOperation(collection, op || {}, rawPartitionKey(req));
      } catch (err) {
        if (!err.refusal) throw err;
        result = fail(err.refusal, err.message);
      }
      results.push(result);
      if (result.statusCode >= 400) break;
    }
  } catch (err) {
    docs.rollback();
    throw err;
  }
  const failedAt = results.findIndex(r => r.statusCode >= 400);
  if (failedAt >= 0) {
    docs.rollback();
    res.statusCode = 207;
    const failed = results[failedAt];
    return ops.map((_, i) => (i === failedAt
      ? { statusCode: failed.statusCode, subStatusCode: 0, requestCharge: 1, message: (failed.body || {}).message }
      : { statusCode: 424, subStatusCode: 0, requestCharge: 0 }));
  }
  docs.commit();
  res.statusCode = 200;
  return results.map(r => {
    const entry = { statusCode: r.statusCode, requestCharge: 1 };
    if (r.body && r.body._etag) Object.assign(entry, { eTag: r.body._etag, resourceBody: r.body });
    return entry;
  });
}

const HANDLER_OVERRIDES = {
  "read-document": readDocument,
  "create-document": createDocument,
  "upsert-document": upsertDocument,
  "replace-document": replaceDocument,
  "delete-document": deleteDocument,
  "patch-document": patchDocument,
  "query-documents": queryDocuments,
  "read-documents": readDocuments,
  "batch-documents": batchDocuments
};
Object.entries(HANDLER_OVERRIDES).forEach(([name, handler]) => {
  lib(`handler/${name}`).default = handler;
});
const route = lib("routes").default; // must load after the overrides: it captures handler functions at load time

// ---- HTTP plumbing (replaces the library's request handler: keep-alive, http URLs, Cosmos error bodies).
function errorStatus(err) {
  if (err.refusal) return err.refusal;
  if (err.badRequest || err instanceof SyntaxError) return 400;
  if (err.conflict) return 409;
  if (err.notFound) return 404;
  return 500;
}

// Cosmos answers a request addressed under a database or container that does not exist with 404 and substatus 1003
// (OwnerResourceNotFound), and a missing resource itself with a plain 404: that is how a client tells "the container
// is gone" (an outage) from "no such item". /dbs/d/colls/c is addressed under d only; /dbs/d/colls/c/docs[/i] under
// d and c. The library answered both cases with the same plain 404.
function ownerIsMissing(account, req, { dbId, collId }) {
  const depth = req.url.split("?")[0].split("/").filter(Boolean).length;
  if (dbId === undefined || depth <= 2) return false;
  const database = account.database(dbId);
  if (!database.read()) return true;
  return collId !== undefined && depth > 4 && !database.collection(collId).read();
}

const LOG_REQUESTS = process.env.COSMOS_SERVER_LOG_REQUESTS === "1";

function handleRequest(account, req, res) {
  if (LOG_REQUESTS) {
    res.on("finish", () => console.log(res.statusCode, req.method, req.url, JSON.stringify(req.headers)));
  }
  (async () => {
    const matched = route(req);
    let body;
    if (!matched) {
      res.statusCode = 400;
      body = { message: `no route for ${req.method} ${req.url}` };
    } else if (ownerIsMissing(account, req, matched[0])) {
      res.statusCode = 404;
      res.setHeader("x-ms-substatus", String(OWNER_RESOURCE_NOT_FOUND));
      body = { code: ERROR_CODES[404], message: OWNER_MISSING_MESSAGE };
    } else {
      try {
        body = await matched[1](account, req, res, matched[0]);
      } catch (err) {
        res.statusCode = errorStatus(err);
        if (res.statusCode === 500) console.error(err);
        body = { message: err.message };
      }
    }
    if (res.statusCode >= 400) { // every error in Cosmos's {code, message} shape, which the SDK reports
      const given = body && typeof body === "object" && !Array.isArray(body) ? body : {};
      const code = given.code || ERROR_CODES[res.statusCode] || "Error";
      body = { code, message: given.message || (res.statusCode === 404 ? NOT_FOUND_MESSAGE : code) };
    }
    if (body && body._etag) res.setHeader("etag", body._etag);
    res.setHeader("content-type", "application/json");
    res.setHeader("content-location", `http://${req.headers.host}${req.url}`);
    res.setHeader("x-ms-activity-id", randomUUID());
    res.setHeader("x-ms-request-charge", "1");
    // The library answers every other incremental feed (partition key ranges) this way; the SDK drains until 304.
    // Its ETag is an entity tag like any other, so quoted.
    if (req.headers["a-im"] && !res.changeFeedHandled && res.statusCode === 200) {
      if (req.headers["if-none-match"]) res.statusCode = 304;
      res.setHeader("etag", '"1"');
    }
    if (res.statusCode === 304 || res.statusCode === 204 || body === undefined) res.end();
    else res.end(JSON.stringify(body));
  })().catch(err => {
    console.error(err);
    if (!res.headersSent) res.statusCode = 500;
    res.end();
  });
}

function parseArgs(argv) {
  const args = { host: "127.0.0.1", port: 8081 };
  for (let i = 0; i < argv.length; i += 1) {
    const key = argv[i];
    if (key === "--host") args.host = argv[(i += 1)];
    else if (key === "--port" || key === "-p") args.port = parseInt(argv[(i += 1)], 10);
    else if (key === "--help" || key === "-h") args.help = true;
    else throw new Error(`unknown argument ${key}`);
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) throw new Error("--port needs 0..65535");
  return args;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    console.log("Usage: node cosmos-server.js [--host 127.0.0.1] [--port 8081]  (port 0 = any free port)");
    return;
  }
  let account;
  const server = http.createServer((req, res) => handleRequest(account, req, res));
  // Long idle keep-alive so pooled SDK connections are not closed under them between test steps.
  server.keepAliveTimeout = 300 * 1000;
  server.headersTimeout = 301 * 1000;
  server.listen(args.port, args.host, () => {
    const { address, port } = server.address();
    const host = address === "0.0.0.0" || address === "::" ? "localhost" : address;
    account = new Account(host, port);
    const self = `http://${host.includes(":") ? `[${host}]` : host}:${port}/`;
    const meta = account.read();
    [...meta.writableLocations, ...meta.readableLocations].forEach(loc => { loc.databaseAccountEndpoint = self; });
    console.log(`Ready to accept HTTP connections at ${self}`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main();
