// Structured output through real clients against a running citadel serve:
// the openai npm package (json_schema strict, plain and streamed; json_object),
// the Vercel AI SDK's generateObject and LangChain JS's withStructuredOutput,
// each answer validated against its schema with ajv. The tiny test models
// cannot choose sensible values; constrained decoding still guarantees the
// shape, which is what is checked.
// usage: node structured_clients.mjs BASE_URL API_KEY MODEL
import OpenAI from 'openai';
import Ajv from 'ajv';
import { z } from 'zod';
import { generateObject } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { ChatOpenAI } from '@langchain/openai';

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const ajv = new Ajv({ allErrors: true });
let n = 0;

function check(cond, what) {
  if (!cond) {
    console.error(`FAIL ${what}`);
    process.exit(1);
  }
  n++;
  console.log(`ok   ${what}`);
}

const schema = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 8 },
    age: { type: 'integer' },
    pets: { type: 'array', items: { enum: ['cat', 'dog', 'fish'] }, maxItems: 3 },
    address: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 6 }, zip: { type: ['string', 'null'], maxLength: 3 } },
      required: ['city', 'zip'],
      additionalProperties: false,
    },
    ok: { type: 'boolean' },
  },
  required: ['name', 'age', 'pets', 'address', 'ok'],
  additionalProperties: false,
};
const validate = ajv.compile(schema);
const messages = [{ role: 'user', content: 'Describe a person as JSON.' }];
const response_format = { type: 'json_schema', json_schema: { name: 'person', strict: true, schema } };

// openai: plain, several seeds
for (let seed = 1; seed <= 4; seed++) {
  const r = await client.chat.completions.create({ model, messages, max_tokens: 250, seed, temperature: 1, response_format });
  const text = r.choices[0].message.content;
  let obj = null;
  try { obj = JSON.parse(text); } catch { /* reported below */ }
  check(obj !== null && validate(obj), `openai json_schema, seed ${seed}: ${text.replace(/\s+/g, ' ')} ${JSON.stringify(validate.errors)}`);
  check(r.choices[0].finish_reason === 'stop', `openai json_schema finish_reason stop (seed ${seed})`);
}

// openai: streamed equals plain at temperature 0
{
  const plain = await client.chat.completions.create({ model, messages, max_tokens: 250, temperature: 0, response_format });
  const stream = await client.chat.completions.create({ model, messages, max_tokens: 250, temperature: 0, response_format, stream: true });
  let text = '';
  for await (const chunk of stream) for (const ch of chunk.choices) if (ch.delta?.content) text += ch.delta.content;
  check(text === plain.choices[0].message.content, 'openai json_schema: streamed equals plain');
  check(validate(JSON.parse(text)), 'openai json_schema streamed: valid');
}

// openai: the SDK's parse helper reads the answer as the schema's object
{
  const r = await client.chat.completions.parse({ model, messages, max_tokens: 250, temperature: 0, response_format });
  check(r.choices[0].message.parsed && validate(r.choices[0].message.parsed), 'openai chat.completions.parse');
}

// openai: json_object
{
  const r = await client.chat.completions.create({
    model, messages, max_tokens: 120, temperature: 0, response_format: { type: 'json_object' },
  });
  const t = r.choices[0].message.content.trimStart();
  check(t.startsWith('{'), `openai json_object begins an object: ${t.slice(0, 40)}`);
  if (r.choices[0].finish_reason === 'stop') check(typeof JSON.parse(t) === 'object', 'openai json_object parses');
}

// openai: an unsupported keyword is a 400 naming it
try {
  await client.chat.completions.create({
    model, messages, max_tokens: 10,
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: '^a' } } },
  });
  check(false, 'pattern: no error');
} catch (e) {
  check(e instanceof OpenAI.APIError && e.status === 400 && /'pattern'/.test(e.message), `pattern refused: ${e.message}`);
}

// the Vercel AI SDK: generateObject with a zod schema over chat completions
const zPerson = z.object({
  name: z.string().max(12),
  age: z.number().int(),
  pets: z.array(z.enum(['cat', 'dog', 'fish'])).max(3),
  ok: z.boolean(),
});
{
  const provider = createOpenAI({ baseURL, apiKey });
  const { object } = await generateObject({
    model: provider.chat(model),
    schema: zPerson,
    prompt: 'Describe a person as JSON.',
    maxOutputTokens: 250,
    temperature: 0,
    maxRetries: 0,
  });
  check(zPerson.safeParse(object).success, `AI SDK generateObject: ${JSON.stringify(object)}`);
}

// LangChain JS: withStructuredOutput, JSON schema method
{
  const llm = new ChatOpenAI({ model, apiKey, configuration: { baseURL }, temperature: 0, maxTokens: 250, maxRetries: 0 });
  const structured = llm.withStructuredOutput(zPerson, { method: 'jsonSchema', name: 'person' });
  const out = await structured.invoke('Describe a person as JSON.');
  check(zPerson.safeParse(out).success, `LangChain withStructuredOutput: ${JSON.stringify(out)}`);
}

console.log(`${n} structured-output checks passed`);
