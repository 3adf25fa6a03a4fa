// Sends every Segment call type with the official @segment/analytics-node client to the host given
// as the first argument (an `audsync serve`), flushes, and exits 0 only if every call was delivered.
// Usage: node send-node.mjs http://127.0.0.1:PORT WRITE_KEY
import { Analytics } from '@segment/analytics-node'

const [host, writeKey] = process.argv.slice(2)
if (!host || !writeKey) {
  console.error('usage: node send-node.mjs HOST WRITE_KEY')
  process.exit(2)
}

// flushAt above the number of calls: everything goes in one batch at closeAndFlush, as a short
// script's calls would; maxRetries 0 so that a refusal shows as a failure here, not as a retry.
const analytics = new Analytics({ writeKey, host, flushAt: 20, flushInterval: 60000, maxRetries: 0,
                                  httpRequestTimeout: 10000 })
const failures = []
analytics.on('error', (err) => failures.push(`error event: ${err?.reason ?? err?.message ?? err}`))
const done = (call) => (err) => { if (err) failures.push(`${call}: ${err.message ?? err}`) }

analytics.identify({ userId: 'user-0001', traits: { plan: 'pro', email: 'ada@example.com', logins: 3 } },
                   done('identify'))
analytics.track({ userId: 'user-0001', event: 'Order Completed',
                  properties: { revenue: 42.5, currency: 'EUR',
                                products: [{ product_id: 'p-1', price: 20, quantity: 1 },
                                           { product_id: 'p-2', price: 22.5, quantity: 1 }] } },
                done('track'))
analytics.page({ anonymousId: 'anon-0002', category: 'Docs', name: 'Getting Started',
                 properties: { url: 'https://example.com/docs?utm_source=news', referrer: 'https://search.example/' },
                 context: { campaign: { source: 'news', medium: 'email' } } },
               done('page'))
analytics.screen({ userId: 'user-0002', name: 'Settings', properties: { tab: 'billing' } }, done('screen'))
analytics.group({ userId: 'user-0001', groupId: 'group-0001', traits: { name: 'Acme', plan: 'team' } },
                done('group'))
analytics.alias({ previousId: 'user-0001', userId: 'user-0003' }, done('alias'))
analytics.track({ anonymousId: 'anon-0002', event: 'Viewed', properties: { n: 1 } }, done('track anonymous'))

await analytics.closeAndFlush({ timeout: 15000 })
if (failures.length) {
  console.error(failures.join('\n'))
  process.exit(1)
}
console.log('sent 7 calls')
