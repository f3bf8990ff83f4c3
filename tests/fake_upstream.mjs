// A stand-in for a foreign OpenAI-compatible provider (a peer of kind
// openai) for tests/gateway_e2e.sh. It records every byte it receives,
// request line, headers and body, as one JSON line per request in LOG, so
// the test can say what left the node. It answers as asked, a stream or one
// answer. Model "stall" sends one piece of a streamed answer (or a plain
// answer's headers) and then nothing until the connection closes.
//
//   node tests/fake_upstream.mjs PORT_FILE LOG API_KEY
import fs from 'node:fs';
import http from 'node:http';

const [portFile, logFile, apiKey] = process.argv.slice(2);

function sse(res, obj) {
    res.write(`data: ${JSON.stringify(obj)}\n\n`);
}

const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        const body = Buffer.concat(chunks).toString('latin1');
        fs.appendFileSync(logFile, JSON.stringify({method: req.method, url: req.url,
                                                   headers: req.headers, body}) + '\n');
        if (req.headers.authorization !== `Bearer ${apiKey}`) {
            res.writeHead(401, {'Content-Type': 'application/json'});
            res.end(JSON.stringify({error: {message: 'bad key', type: 'invalid_request_error',
                                            code: 'invalid_api_key'}}));
            return;
        }
        if (req.method === 'GET' && req.url === '/v1/models') {
            res.writeHead(200, {'Content-Type': 'application/json'});
            res.end(JSON.stringify({object: 'list', data: [{id: 'global-model', object: 'model'}]}));
            return;
        }
        if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
            res.writeHead(404, {'Content-Type': 'application/json'});
            res.end(JSON.stringify({error: {message: 'no such route', type: 'invalid_request_error'}}));
            return;
        }
        let j;
        try {
            j = JSON.parse(body);
        } catch {
            res.writeHead(400, {'Content-Type': 'application/json'});
            res.end(JSON.stringify({error: {message: 'not JSON', type: 'invalid_request_error'}}));
            return;
        }
        if (!j.stream) { // one answer, as a provider gives it to a client that does not stream
            if (j.model === 'stall') {
                res.writeHead(200, {'Content-Type': 'application/json'});
                return; // and nothing more
            }
            res.writeHead(200, {'Content-Type': 'application/json'});
            res.end(JSON.stringify({id: 'chatcmpl-up', object: 'chat.completion', created: 1,
                                    model: j.model,
                                    choices: [{index: 0, message: {role: 'assistant',
                                                                   content: 'Hello from abroad.'},
                                               finish_reason: 'stop'}],
                                    usage: {prompt_tokens: 7, completion_tokens: 3,
                                            total_tokens: 10}}));
            return;
        }
        const base = {id: 'chatcmpl-up', object: 'chat.completion.chunk', created: 1, model: j.model};
        res.writeHead(200, {'Content-Type': 'text/event-stream'});
        sse(res, {...base, choices: [{index: 0, delta: {role: 'assistant', content: ''}}]});
        if (j.model === 'stall') {
            sse(res, {...base, choices: [{index: 0, delta: {content: 'I will '}}]});
            return; // and nothing more
        }
        for (const piece of ['Hello ', 'from ', 'abroad.'])
            sse(res, {...base, choices: [{index: 0, delta: {content: piece}}]});
        sse(res, {...base, choices: [{index: 0, delta: {}, finish_reason: 'stop'}]});
        if (j.stream_options && j.stream_options.include_usage)
            sse(res, {...base, choices: [], usage: {prompt_tokens: 7, completion_tokens: 3,
                                                    total_tokens: 10}});
        res.end('data: [DONE]\n\n');
    });
});

server.listen(0, '127.0.0.1', () => fs.writeFileSync(portFile, String(server.address().port)));
process.on('SIGTERM', () => process.exit(0));
