// The official openai npm package against a running citadel serve.
// usage: node openai_client.mjs BASE_URL API_KEY MODEL GREEDY_TEXT
// GREEDY_TEXT is what `citadel run --temp 0 -n 24` printed for "Once upon a time".
// Prints one line per check; exits 1 on the first failure.
import OpenAI from 'openai';

const [baseURL, apiKey, model, greedy] = process.argv.slice(2);
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

async function expectError(fn, status, what, param) {
  try {
    await fn();
  } catch (e) {
    check(e instanceof OpenAI.APIError && e.status === status, `${what}: ${e.status} ${e.message}`);
    if (param !== undefined) check(e.param === param, `${what}: param ${e.param}`);
    return;
  }
  check(false, `${what}: no error`);
}

// models
const models = await client.models.list();
check(models.data.some((m) => m.id === model), 'models.list has the model');
const one = await client.models.retrieve(model);
check(one.id === model && one.object === 'model', 'models.retrieve');

// completions: greedy equals citadel run --temp 0
const c = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
check(c.choices[0].text === greedy, `completion equals citadel run: ${JSON.stringify(c.choices[0].text)}`);
check(c.usage.prompt_tokens === 5 && c.usage.completion_tokens === 24 && c.usage.total_tokens === 29, 'completion usage');
check(c.choices[0].finish_reason === 'length', 'completion finish_reason length');

// chat, plain and streamed, agree
const messages = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'A story about a cat' }];
const chat = await client.chat.completions.create({ model, messages, max_tokens: 20, temperature: 0 });
check(chat.object === 'chat.completion' && chat.choices[0].message.role === 'assistant', 'chat shape');
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 20, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let text = '', finish = null, usage = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  for (const ch of chunk.choices) {
    if (ch.delta?.content) text += ch.delta.content;
    if (ch.finish_reason) finish = ch.finish_reason;
  }
}
check(text === chat.choices[0].message.content, `streamed chat equals plain chat (${chunks} chunks)`);
check(finish === 'length' && usage && usage.completion_tokens === 20 && usage.prompt_tokens === chat.usage.prompt_tokens, 'stream usage and finish_reason');

// completions stream
const cs = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 24, temperature: 0, stream: true });
let ctext = '';
for await (const chunk of cs) ctext += chunk.choices[0]?.text ?? '';
check(ctext === greedy, 'streamed completion equals citadel run');

// stop strings and seeds
const cut = greedy.indexOf('girl');
if (cut > 0) {
  const s = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 24, temperature: 0, stop: ['girl'] });
  check(s.choices[0].text === greedy.slice(0, cut) && s.choices[0].finish_reason === 'stop', 'stop string');
}
const a = await client.completions.create({ model, prompt: 'The cat', max_tokens: 30, temperature: 1, seed: 11 });
const b = await client.completions.create({ model, prompt: 'The cat', max_tokens: 30, temperature: 1, seed: 11 });
check(a.choices[0].text === b.choices[0].text, 'same seed, same text');

// errors
await expectError(() => client.chat.completions.create({ model, messages, n: 2 }), 400, 'n=2 refused', 'n');
await expectError(() => client.chat.completions.create({ model, messages, temperature: 5 }), 400, 'temperature out of range', 'temperature');
await expectError(() => client.chat.completions.create({ model: 'no-such-model', messages }), 404, 'unknown model');
const bad = new OpenAI({ baseURL, apiKey: 'cit_0123456789abcdef_nope', maxRetries: 0 });
await expectError(() => bad.models.list(), 401, 'wrong key');

console.log(`${n} checks passed`);
