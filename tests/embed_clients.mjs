// Real clients against citadel serve's /v1/embeddings: the official openai
// npm package (which asks for base64 and decodes it itself) and LangChain
// JS's OpenAIEmbeddings, on synth-bert, each vector checked against the
// reference file's; a personal-data string gets the decision chat gives it.
// usage: node embed_clients.mjs BASE_URL API_KEY MODEL REF_JSON
// Prints one line per check; exits 1 on the first failure.
import fs from 'node:fs';
import OpenAI from 'openai';
import { OpenAIEmbeddings } from '@langchain/openai';

const [baseURL, apiKey, model, refPath] = process.argv.slice(2);
const ref = JSON.parse(fs.readFileSync(refPath, 'utf8'));
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
let n = 0;

function check(cond, what) {
  if (!cond) {
    console.error(`FAIL ${what}`);
    process.exit(1);
  }
  n++;
  console.log(`ok   ${what}`);
}

function cosine(a, b) {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

const prompts = ref.cases.map((c) => c.prompt);
const want = ref.cases.map((c) => c.embedding);

// openai: one string, then every prompt in one call
const one = await client.embeddings.create({ model, input: prompts[0] });
check(one.object === 'list' && one.data.length === 1 && one.model === model, 'embeddings.create shape');
check(one.data[0].embedding.length === ref.n_embd, `${ref.n_embd} dimensions`);
check(cosine(one.data[0].embedding, want[0]) >= 0.999, `cosine with the reference ${cosine(one.data[0].embedding, want[0]).toFixed(7)}`);
check(one.usage.prompt_tokens === ref.cases[0].prompt_tokens.length, `usage.prompt_tokens ${one.usage.prompt_tokens}`);
const all = await client.embeddings.create({ model, input: prompts });
check(all.data.length === prompts.length && all.data.every((d, i) => d.index === i), 'array input, in order');
const worst = Math.min(...all.data.map((d, i) => cosine(d.embedding, want[i])));
check(worst >= 0.999, `every prompt within cosine 0.999 (worst ${worst.toFixed(7)})`);
const flt = await client.embeddings.create({ model, input: prompts[0], encoding_format: 'float' });
check(flt.data[0].embedding.every((x, i) => Math.abs(x - one.data[0].embedding[i]) < 1e-6), 'float and base64 agree');
const short = await client.embeddings.create({ model, input: prompts[0], dimensions: 32 });
const norm = Math.sqrt(short.data[0].embedding.reduce((s, x) => s + x * x, 0));
check(short.data[0].embedding.length === 32 && Math.abs(norm - 1) < 1e-5, 'dimensions 32, normalised');
try {
  await client.embeddings.create({ model, input: '' });
  check(false, 'empty input refused');
} catch (e) {
  check(e instanceof OpenAI.APIError && e.status === 400 && e.param === 'input', `empty input: 400 ${e.message}`);
}

// a personal-data string: the decision chat would get (the header), and
// the vector is the redacted text's
const pii = 'Write to alice.smith@example.com about the plan';
const raw = await client.embeddings.create({ model, input: pii }).withResponse();
const decision = raw.response.headers.get('x-citadel-decision');
const dec = await fetch(`${baseURL}/policy/decide`, {
  method: 'POST', headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
  body: JSON.stringify({ model, messages: [{ role: 'user', content: pii }] }),
}).then((r) => r.json());
check(decision === `${dec.action}; rule=${dec.rule}` && dec.action === 'redact', `personal data: ${decision}, as chat's decision`);
const placeholder = await client.embeddings.create({ model, input: 'Write to [EMAIL_1] about the plan' });
check(cosine(raw.data.data[0].embedding, placeholder.data[0].embedding) > 0.9999999, 'the redacted text was embedded');

// LangChain JS
const lc = new OpenAIEmbeddings({ model, apiKey, configuration: { baseURL }, maxRetries: 0 });
const q = await lc.embedQuery(prompts[1]);
check(q.length === ref.n_embd && cosine(q, want[1]) >= 0.999, `LangChain embedQuery: cosine ${cosine(q, want[1]).toFixed(7)}`);
const docs = await lc.embedDocuments(prompts);
check(docs.length === prompts.length && docs.every((d, i) => cosine(d, want[i]) >= 0.999), 'LangChain embedDocuments');

console.log(`${n} checks passed`);
