// The npm aws-greengrass-core-sdk 1.7.0 StreamManagerClient against the
// service: the operations a Node.js function uses; prints one JSON line.
const sm = require('aws-greengrass-core-sdk/stream-manager');

const c = new sm.StreamManagerClient();
c.onError((e) => {
    console.log(JSON.stringify({ connectError: String(e) }));
    process.exit(0);
});
c.onConnected(async () => {
    const out = {};
    try {
        await c.createMessageStream(new sm.MessageStreamDefinition()
            .withName('node stream')
            .withStrategyOnFull(sm.StrategyOnFull.OverwriteOldestData)
            .withPersistence(sm.Persistence.File));
        out.seqs = [];
        for (let i = 0; i < 3; i += 1) {
            out.seqs.push(Number(await c.appendMessage('node stream', Buffer.from(`n${i}`))));
        }
        const msgs = await c.readMessages('node stream', new sm.ReadMessagesOptions()
            .withDesiredStartSequenceNumber(1).withMinMessageCount(2).withMaxMessageCount(2));
        out.read = msgs.map((m) => [Number(m.sequenceNumber), m.payload.toString()]);
        out.list = await c.listStreams();
        const info = await c.describeMessageStream('node stream');
        out.newest = Number(info.storageStatus.newestSequenceNumber);
        try {
            await c.appendMessage('nope', Buffer.from('x'));
            out.missing = 'no error';
        } catch (e) {
            out.missing = e.constructor.name;
        }
        try {
            await c.readMessages('node stream', new sm.ReadMessagesOptions()
                .withDesiredStartSequenceNumber(3).withMinMessageCount(1).withReadTimeoutMillis(200));
            out.notEnough = 'no error';
        } catch (e) {
            out.notEnough = e.constructor.name;
        }
        await c.deleteMessageStream('node stream');
        out.after = await c.listStreams();
    } catch (e) {
        out.error = String(e);
    }
    console.log(JSON.stringify(out));
    c.close();
});
