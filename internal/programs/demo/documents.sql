-- Sample crawled documents for `make demo`: the crawler's tables, as the
-- KG workers find them. One to three chunks per document.
BEGIN;
INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (1, 'https://example.com/guide/1', 'Installing KATO processors', '# Installing KATO processors

A KATO processor learns sequences of observations and predicts what comes next.', json_object('source', 'demo'));
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (1, 0, 'Installing KATO processors.', 0, 26, 3);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (1, 1, 'A KATO processor learns sequences of observations and predicts what comes next.', 28, 106, 12);
INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (2, 'https://example.com/guide/2', 'Running several instances', '# Running several instances

Each instance has its own ID, its own ports and its own learned state.', json_object('source', 'demo'));
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (2, 0, 'Running several instances.', 0, 25, 3);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (2, 1, 'Each instance has its own ID, its own ports and its own learned state.', 27, 96, 14);
INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (3, 'https://example.com/guide/3', 'Ports and allocation', '# Ports and allocation

The manager hands out the next free REST and ZMQ ports from a configured range.', json_object('source', 'demo'));
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (3, 0, 'Ports and allocation.', 0, 20, 3);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (3, 1, 'The manager hands out the next free REST and ZMQ ports from a configured range.', 22, 100, 15);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (3, 2, 'See also the previous section.', 102, 131, 5);
INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (4, 'https://example.com/guide/4', 'The instance registry', '# The instance registry

The registry remembers every instance''s ID, name, ports and parameters.', json_object('source', 'demo'));
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (4, 0, 'The instance registry.', 0, 21, 3);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (4, 1, 'The registry remembers every instance''s ID, name, ports and parameters.', 23, 93, 10);
INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (5, 'https://example.com/guide/5', 'Stopping by name', '# Stopping by name

An instance can be stopped by its ID or by its name, when the name is unique.', json_object('source', 'demo'));
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (5, 0, 'Stopping by name.', 0, 16, 3);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (5, 1, 'An instance can be stopped by its ID or by its name, when the name is unique.', 18, 94, 17);
INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (6, 'https://example.com/guide/6', 'Shared services', '# Shared services

Instances share a MongoDB and a vector database, started once for all of them.', json_object('source', 'demo'));
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (6, 0, 'Shared services.', 0, 15, 2);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (6, 1, 'Instances share a MongoDB and a vector database, started once for all of them.', 17, 94, 14);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (6, 2, 'See also the previous section.', 96, 125, 5);
INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (7, 'https://example.com/guide/7', 'The KG worker pool', '# The KG worker pool

Workers take documents from the queue in batches and send them to the KG service.', json_object('source', 'demo'));
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (7, 0, 'The KG worker pool.', 0, 18, 4);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (7, 1, 'Workers take documents from the queue in batches and send them to the KG service.', 20, 100, 15);
INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (8, 'https://example.com/guide/8', 'Retries and backoff', '# Retries and backoff

A failed item is retried with a growing delay, up to the configured limit.', json_object('source', 'demo'));
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (8, 0, 'Retries and backoff.', 0, 19, 3);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (8, 1, 'A failed item is retried with a growing delay, up to the configured limit.', 21, 94, 14);
INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (9, 'https://example.com/guide/9', 'Worker leases', '# Worker leases

A worker that dies leaves its items leased; they return to the queue when the lease expires.', json_object('source', 'demo'));
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (9, 0, 'Worker leases.', 0, 13, 2);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (9, 1, 'A worker that dies leaves its items leased; they return to the queue when the lease expires.', 15, 106, 17);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (9, 2, 'See also the previous section.', 101, 130, 5);
INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (10, 'https://example.com/guide/10', 'Health and statistics', '# Health and statistics

The pool reports how many workers are healthy and how many items each processed.', json_object('source', 'demo'));
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (10, 0, 'Health and statistics.', 0, 21, 3);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (10, 1, 'The pool reports how many workers are healthy and how many items each processed.', 23, 102, 14);
INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (11, 'https://example.com/guide/11', 'Instance logs', '# Instance logs

Every instance logs to the journal; kato-manager logs shows an instance''s lines.', json_object('source', 'demo'));
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (11, 0, 'Instance logs.', 0, 13, 2);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (11, 1, 'Every instance logs to the journal; kato-manager logs shows an instance''s lines.', 15, 94, 12);
INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES (12, 'https://example.com/guide/12', 'Registry drift', '# Registry drift

The status command says when the registry and systemd disagree, and gc repairs it.', json_object('source', 'demo'));
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (12, 0, 'Registry drift.', 0, 14, 2);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (12, 1, 'The status command says when the registry and systemd disagree, and gc repairs it.', 16, 97, 14);
INSERT INTO content_chunks(content_id, chunk_index, chunk_text, char_start, char_end, word_count) VALUES (12, 2, 'See also the previous section.', 90, 119, 5);
COMMIT;
