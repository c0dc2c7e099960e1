// Drives `zaya serve` with the official `openai` npm client, written against the OpenAI API only.
// usage: node client.mjs <dir holding node_modules/openai> <base URL, e.g. http://127.0.0.1:8080/v1> <api key>
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import assert from 'node:assert/strict';

const [modDir, baseURL, apiKey] = process.argv.slice(2);
const { default: OpenAI } = await import(pathToFileURL(path.join(modDir, 'node_modules/openai/index.mjs')).href);
const client = new OpenAI({ baseURL, apiKey: apiKey || 'none', maxRetries: 0, timeout: 60000 });

let checks = 0;
async function check(name, fn) {
  try {
    await fn();
    checks++;
    console.log(`ok - ${name}`);
  } catch (e) {
    console.error(`FAIL - ${name}: ${e.stack || e}`);
    process.exitCode = 1;
  }
}

const models = await client.models.list();
const model = models.data[0].id;
const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hello.' }];
const tools = [{
  type: 'function',
  function: {
    name: 'get_weather', description: 'Current weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}];

await check('models.list', async () => {
  assert.equal(models.object, 'list');
  assert.ok(typeof model === 'string' && model.length > 0);
});

let plain;
await check('chat non-streamed', async () => {
  plain = await client.chat.completions.create({ model, messages, max_tokens: 12, seed: 7, temperature: 0.8 });
  assert.equal(plain.object, 'chat.completion');
  const c = plain.choices[0];
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(['stop', 'length'].includes(c.finish_reason));
  assert.ok(plain.usage.prompt_tokens > 0);
  assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + plain.usage.completion_tokens);
});

await check('chat streamed equals non-streamed (same seed)', async () => {
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 12, seed: 7, temperature: 0.8, stream: true, stream_options: { include_usage: true },
  });
  let text = '', finish = null, usage = null, role = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) {
      if (ch.delta.role) role = ch.delta.role;
      if (ch.delta.content) text += ch.delta.content;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(role, 'assistant');
  assert.equal(text, plain.choices[0].message.content);
  assert.equal(finish, plain.choices[0].finish_reason);
  assert.ok(usage && usage.completion_tokens === plain.usage.completion_tokens);
});

await check('tool call (named tool_choice)', async () => {
  // The tiny test model has random weights: logit_bias makes it end right after the forced call header.
  const r = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools,
    tool_choice: { type: 'function', function: { name: 'get_weather' } }, logit_bias: { 106: 100 }, max_tokens: 8,
  });
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.tool_calls.length, 1);
  const call = c.message.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  assert.equal(typeof call.function.arguments, 'string');
  assert.equal(typeof JSON.parse(call.function.arguments), 'object');
  assert.ok(call.id.length > 0);
});

await check('tool call streamed', async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools,
    tool_choice: { type: 'function', function: { name: 'get_weather' } }, logit_bias: { 106: 100 }, max_tokens: 8,
    stream: true,
  });
  const calls = [];
  let finish = null;
  for await (const chunk of stream) {
    for (const ch of chunk.choices) {
      for (const d of ch.delta.tool_calls ?? []) {
        calls[d.index] ??= { id: '', name: '', args: '' };
        if (d.id) calls[d.index].id = d.id;
        if (d.function?.name) calls[d.index].name += d.function.name;
        if (d.function?.arguments) calls[d.index].args += d.function.arguments;
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(finish, 'tool_calls');
  assert.equal(calls.length, 1);
  assert.equal(calls[0].name, 'get_weather');
  assert.equal(typeof JSON.parse(calls[0].args || '{}'), 'object');
});

await check('tool result turn is accepted', async () => {
  const r = await client.chat.completions.create({
    model, tools, max_tokens: 4, seed: 1,
    messages: [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '18 C, sunny' },
    ],
  });
  assert.equal(r.choices[0].message.role, 'assistant');
});

await check('completions, plain and streamed', async () => {
  const a = await client.completions.create({ model, prompt: 'The GNU General Public License is', max_tokens: 8, seed: 3 });
  assert.equal(a.object, 'text_completion');
  assert.equal(typeof a.choices[0].text, 'string');
  const stream = await client.completions.create({
    model, prompt: 'The GNU General Public License is', max_tokens: 8, seed: 3, stream: true,
  });
  let text = '', finish = null;
  for await (const chunk of stream) for (const ch of chunk.choices) { text += ch.text; if (ch.finish_reason) finish = ch.finish_reason; }
  assert.equal(text, a.choices[0].text);
  assert.equal(finish, a.choices[0].finish_reason);
});

await check('bad request raises BadRequestError', async () => {
  await assert.rejects(client.chat.completions.create({ model, messages: [], max_tokens: 4 }), (e) => {
    assert.equal(e.status, 400);
    assert.ok(e instanceof OpenAI.BadRequestError);
    return true;
  });
});

console.log(`${checks} checks passed`);
